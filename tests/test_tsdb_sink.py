"""The HTTP side of the telemetry writer: what goes over the wire and how answers map to errors.

VictoriaMetrics accepts any body with 204, so the refusals InfluxDB can answer (400, 401,
413, 503) come from a small stand-in HTTP server here; the real round trip is in
``test_tsdb_roundtrip.py``.
"""

from __future__ import annotations

import gzip
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import SiteConfig, TsdbConfig
from edge.outputs.tsdb import (
    InfluxLineSink,
    InfluxTelemetryWriter,
    LineSink,
    TsdbConfigError,
    TsdbRejected,
    TsdbUnavailable,
)
from edge.outputs.tsdb_http import HttpLineSink
from tests.servers import free_port

SinkClass = type[HttpLineSink] | type[InfluxLineSink]


@pytest.fixture(params=["http", "influxdb-client"])
def Sink(request: pytest.FixtureRequest) -> SinkClass:
    """Both sinks keep the same contract: the default (httpx) and influxdb-client."""
    return HttpLineSink if request.param == "http" else InfluxLineSink


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    lines: list[str]


@dataclass
class StubDatabase:
    """Answers writes with the queued statuses (then 204) and records every request."""

    statuses: list[int] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    max_lines: int | None = None
    url: str = ""


@pytest.fixture
def stub() -> Iterator[StubDatabase]:
    db = StubDatabase()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            url = urllib.parse.urlsplit(self.path)
            lines = raw.decode().split("\n")
            db.seen.append(
                Seen(url.path, urllib.parse.parse_qs(url.query), dict(self.headers), lines)
            )
            status = db.statuses.pop(0) if db.statuses else 204
            if db.max_lines is not None and len(lines) > db.max_lines:
                status = 413
            body = b'{"code":"invalid","message":"stub says no"}' if status >= 400 else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    db.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield db
    finally:
        server.shutdown()
        server.server_close()


def config(url: str, **extra: Any) -> TsdbConfig:
    return TsdbConfig.model_validate({"url": url, "org": "acme", "bucket": "tele", **extra})


def readings(n: int) -> list[Reading]:
    return [Reading("s1", "water_pump", "p1", 100.0 + i, {"current_a": 2.5}) for i in range(n)]


def writer(sink: LineSink, batch_size: int = 5000) -> InfluxTelemetryWriter:
    site = SiteConfig(site_id="s1")
    return InfluxTelemetryWriter(
        config("http://unused", batch_size=batch_size), site, load_profiles(), sink=sink
    )


def test_writes_are_gzipped_line_protocol_to_api_v2_write_with_the_token(
    stub: StubDatabase, Sink: SinkClass
) -> None:
    sink = Sink(config(stub.url, token="s3cret"))
    writer(sink).write(readings(3))
    (req,) = stub.seen
    assert req.path == "/api/v2/write"
    assert req.query["org"] == ["acme"] and req.query["bucket"] == ["tele"]
    assert req.query["precision"] == ["ms"]
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.headers["Authorization"] == "Token s3cret"
    assert req.lines == [
        f"water_pump,device=p1,site=s1 current_a=2.5 {(100 + i) * 1000}" for i in range(3)
    ]


def test_compression_can_be_turned_off(stub: StubDatabase, Sink: SinkClass) -> None:
    Sink(config(stub.url), gzip_level=0).send(b"m f=1 1", 1)
    assert stub.seen[0].headers.get("Content-Encoding") in (None, "identity")
    assert stub.seen[0].lines == ["m f=1 1"]


def test_no_token_means_no_authorization_header(
    stub: StubDatabase, monkeypatch: pytest.MonkeyPatch, Sink: SinkClass
) -> None:
    monkeypatch.delenv("GATEHOUSE_TSDB_TOKEN", raising=False)
    Sink(config(stub.url)).send(b"m f=1 1", 1)
    assert "Authorization" not in stub.seen[0].headers


def test_a_short_blip_is_ridden_out_by_retries(stub: StubDatabase, Sink: SinkClass) -> None:
    stub.statuses = [503, 503]
    Sink(config(stub.url), retries=2, backoff_s=0.01).send(b"m f=1 1", 1)
    assert len(stub.seen) == 3


def test_a_longer_outage_raises_unavailable_after_the_retries(
    stub: StubDatabase, Sink: SinkClass
) -> None:
    stub.statuses = [503, 503, 503]
    sink = Sink(config(stub.url), retries=1, backoff_s=0.01)
    with pytest.raises(TsdbUnavailable):
        sink.send(b"m f=1 1", 1)
    assert len(stub.seen) == 2


def test_bad_credentials_spool_rather_than_drop(stub: StubDatabase, Sink: SinkClass) -> None:
    stub.statuses = [401]
    with pytest.raises(TsdbUnavailable, match="HTTP 401"):
        Sink(config(stub.url), retries=0).send(b"m f=1 1", 1)


def test_malformed_data_is_refused_not_retried(stub: StubDatabase, Sink: SinkClass) -> None:
    stub.statuses = [400]
    sink = Sink(config(stub.url), retries=2, backoff_s=0.01)
    with pytest.raises(TsdbRejected, match="stub says no"):
        sink.send(b"m f=1 1", 1)
    assert len(stub.seen) == 1
    stub.statuses = [400]
    w = writer(sink)
    w.write(readings(2))
    assert w.stats()["lines_rejected_by_database"] == 2


def test_a_body_too_large_is_split_and_all_lines_arrive(
    stub: StubDatabase, Sink: SinkClass
) -> None:
    stub.max_lines = 3
    w = writer(Sink(config(stub.url), retries=0), batch_size=10)
    w.write(readings(10))
    stored = [line for req in stub.seen if len(req.lines) <= 3 for line in req.lines]
    assert len(stored) == 10
    assert w.stats()["lines_written"] == 10


def test_nothing_listening_is_unavailable_with_every_reading_unwritten(Sink: SinkClass) -> None:
    sink = Sink(config(f"http://127.0.0.1:{free_port()}"), retries=0, timeout_s=2)
    batch = readings(4)
    with pytest.raises(TsdbUnavailable) as info:
        writer(sink).write(batch)
    assert info.value.unwritten == tuple(batch)


def test_bad_sink_options_fail_at_construction(Sink: SinkClass) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Sink(config("http://x"), timeout_s=0)
    with pytest.raises(ValueError, match="retries"):
        Sink(config("http://x"), retries=-1)
    with pytest.raises(ValueError, match="gzip_level"):
        Sink(config("http://x"), gzip_level=10)


@pytest.mark.parametrize("url", ["localhost:8428", "ftp://db:21", "http://", "http://db:port"])
def test_a_url_that_cannot_work_fails_at_construction(url: str, Sink: SinkClass) -> None:
    with pytest.raises(TsdbConfigError, match=r"tsdb\.url"):
        Sink(config(url))


def test_an_unreadable_token_file_fails_at_construction_naming_it(
    tmp_path: Path, Sink: SinkClass
) -> None:
    missing = tmp_path / "no-such-token"
    with pytest.raises(TsdbConfigError, match="no-such-token"):
        Sink(config("http://db:8428", token_file=str(missing)))


def test_the_site_file_chooses_the_sink() -> None:
    site = SiteConfig(site_id="s1")
    default = InfluxTelemetryWriter(config("http://db:8428"), site, load_profiles())
    official = InfluxTelemetryWriter(
        config("http://db:8428", client="influxdb-client"), site, load_profiles()
    )
    try:
        assert type(default._sink) is HttpLineSink
        assert type(official._sink) is InfluxLineSink
    finally:
        default.close()
        official.close()
