"""The edge's cloud-summary output: minute aggregation, closing, batching, retry, bounds.

Unit tests with a fake transport and a fake monotonic clock (no thread runs); one test
posts to the real cloud app in process to check the two sides agree on the shape.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from cloud.dashboard import install
from device_profiles import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import CloudConfig, SiteConfig
from edge.outputs.cloud_summary import (
    CloudSummaryOutput,
    SummaryRejected,
    SummaryUnavailable,
    batch_body,
    upload_evidence,
)
from tests.servers_cloud import T0, harness

M0 = (T0 // 60) * 60


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeTransport:
    """Records batches; fails with the queued errors first."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.errors: list[Exception] = []
        self.closed = False

    def post(self, site_id: str, items: Sequence[bytes]) -> None:
        assert site_id == "s1"
        if self.errors:
            raise self.errors.pop(0)
        self.batches.append([orjson.loads(i) for i in items])

    def close(self) -> None:
        self.closed = True

    @property
    def items(self) -> list[dict[str, Any]]:
        return [i for b in self.batches for i in b]


def reading(ts: float, device: str = "b1-pump-1", **values: float) -> Reading:
    return Reading(site_id="s1", kind="water_pump", device_id=device, ts=ts, values=values)


def output(
    transport: FakeTransport, clock: FakeClock, **kw: Any
) -> CloudSummaryOutput:
    return CloudSummaryOutput(
        "s1", transport, buildings={"b1-pump-1": "B1"},
        fields={"water_pump": frozenset({"accel1_rms", "current_a"})},
        monotonic=clock, start_thread=False, retry_initial=1.0, retry_max=8.0, **kw,
    )


def test_a_minute_is_posted_with_mean_max_and_count_once_the_device_moves_on() -> None:
    t, clock = FakeTransport(), FakeClock()
    out = output(t, clock)
    out.write([reading(M0 + 1, accel1_rms=1.0, current_a=5.0),
               reading(M0 + 30, accel1_rms=3.0, current_a=7.0)])
    assert out.pump() == 0
    out.write([reading(M0 + 61, accel1_rms=9.0)])
    assert out.pump() == 1
    assert t.items == [{
        "device_id": "b1-pump-1", "kind": "water_pump", "building": "B1", "ts": M0,
        "values": {"accel1_rms": 2.0, "current_a": 6.0},
        "max": {"accel1_rms": 3.0, "current_a": 7.0}, "count": 2,
    }]


def test_an_idle_minute_closes_after_idle_close_and_close_flushes_the_rest() -> None:
    t, clock = FakeTransport(), FakeClock()
    out = output(t, clock, idle_close=75.0)
    out.write([reading(M0 + 5, accel1_rms=1.0)])
    clock.t += 74
    assert out.pump() == 0
    clock.t += 1
    assert out.pump() == 1
    out.write([reading(M0 + 300, accel1_rms=2.0)])
    out.close()
    assert [i["ts"] for i in t.items] == [M0, M0 + 300]
    assert t.closed


def test_unknown_fields_and_non_finite_values_are_dropped_and_counted() -> None:
    t, clock = FakeTransport(), FakeClock()
    out = output(t, clock)
    out.write([reading(M0, accel1_rms=float("nan"), bogus=1.0, current_a=2.0),
               reading(float("inf"), accel1_rms=1.0)])
    out.pump(close_all=True)
    assert t.items[0]["values"] == {"current_a": 2.0}
    assert out.stats()["values_dropped"] == 3


def test_while_the_cloud_is_down_minutes_wait_with_backoff_then_go_in_order() -> None:
    t, clock = FakeTransport(), FakeClock()
    out = output(t, clock, batch_size=2, max_pending=10)
    for m in range(5):
        out.write([reading(M0 + 60 * m, accel1_rms=float(m))])
    t.errors = [SummaryUnavailable("down"), SummaryUnavailable("down")]
    assert out.pump(close_all=True) == 0
    assert out.pending() == 5
    assert out.pump() == 0  # still inside the backoff delay: no second attempt yet
    assert out.stats()["post_failures"] == 1
    clock.t += 1.0
    assert out.pump() == 0
    clock.t += 2.0
    assert out.pump() == 5
    assert [i["values"]["accel1_rms"] for i in t.items] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [len(b) for b in t.batches] == [2, 2, 1]


def test_pending_minutes_are_bounded_and_the_oldest_dropped_first() -> None:
    t, clock = FakeTransport(), FakeClock()
    out = output(t, clock, batch_size=2, max_pending=3)
    t.errors = [SummaryUnavailable("down")]
    for m in range(6):
        out.write([reading(M0 + 60 * m, accel1_rms=float(m))])
    out.pump(close_all=True)
    assert out.pending() == 3
    assert out.stats()["items_dropped_overflow"] == 3
    clock.t += 10
    out.pump()
    assert [i["values"]["accel1_rms"] for i in t.items] == [3.0, 4.0, 5.0]


def test_a_waiting_minute_costs_its_encoding_not_a_4_kib_buffer() -> None:
    """Minutes wait in memory through a cloud outage: each as its JSON bytes, copied to
    their own size (orjson's result keeps the 4 KiB buffer it wrote into)."""
    t, clock = FakeTransport(), FakeClock()
    t.errors = [SummaryUnavailable("down")]
    out = output(t, clock, max_pending=1000)
    devices = [f"b1-pump-{i}" for i in range(200)]
    out.write([reading(M0 + 1, d, accel1_rms=1.0 + i, current_a=5.0)
               for i, d in enumerate(devices)])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out.write([reading(M0 + 61, d, accel1_rms=2.0) for d in devices])  # closes 200
        assert out.pump() == 0  # the cloud is down: all 200 wait
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert out.pending() == 200
    assert held / 200 < 1024, f"{held / 200:.0f} bytes per waiting minute"


def test_a_refused_batch_is_dropped_and_counted_not_retried_forever() -> None:
    t, clock = FakeTransport(), FakeClock()
    out = output(t, clock, batch_size=1)
    out.write([reading(M0, accel1_rms=1.0), reading(M0 + 60, accel1_rms=2.0)])
    t.errors = [SummaryRejected("422")]
    assert out.pump(close_all=True) == 1
    assert [i["ts"] for i in t.items] == [M0 + 60]
    assert out.stats()["batches_rejected"] == 1


def test_bad_settings_fail_at_construction() -> None:
    t, clock = FakeTransport(), FakeClock()
    with pytest.raises(ValueError, match="batch_size"):
        output(t, clock, batch_size=0)
    with pytest.raises(ValueError, match="max_pending"):
        output(t, clock, batch_size=10, max_pending=5)


def test_from_site_needs_a_token_and_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEHOUSE_GATEWAY_TOKEN", raising=False)
    profiles = load_profiles()
    bare = SiteConfig(site_id="s1")
    assert CloudSummaryOutput.from_site(bare, profiles) is None
    site = SiteConfig(site_id="s1", cloud=CloudConfig(url="http://127.0.0.1:9", token="t"))
    monkeypatch.setenv("GATEHOUSE_CLOUD_SUMMARY", "off")
    assert CloudSummaryOutput.from_site(site, profiles) is None
    monkeypatch.delenv("GATEHOUSE_CLOUD_SUMMARY")
    built = CloudSummaryOutput.from_site(site, profiles)
    assert built is not None
    built.close()


def test_the_cloud_accepts_what_the_output_posts(tmp_path: Path) -> None:
    """Both sides of the contract: what the output posts, the app stores and serves back."""
    with harness(f"sqlite:///{tmp_path}/cloud.db") as h:
        install(h.client.app)  # type: ignore[arg-type]
        posted: list[Any] = []

        class ClientTransport:
            def post(self, site_id: str, items: Sequence[bytes]) -> None:
                reply = h.client.post(
                    "/api/v1/telemetry", content=batch_body(site_id, items),
                    headers={**h.gateway("s1"), "Content-Type": "application/json"},
                )
                posted.append(reply.json())
                if reply.status_code != 200:
                    raise SummaryRejected(reply.text)

            def close(self) -> None:
                pass

        real = CloudSummaryOutput("s1", ClientTransport(), buildings={"b1-pump-1": "B1"},
                                  start_thread=False)
        real.write([reading(M0 - 120, accel1_rms=0.4), reading(M0 - 100, accel1_rms=0.6)])
        real.close()
        assert posted == [{"stored": 1, "rejected": []}]
        viewer = h.user("vic", "viewer", ["s1"])
        points = h.client.get("/api/v1/devices/b1-pump-1/readings", headers=viewer,
                              params={"since": M0 - 600}).json()["points"]
        assert points[0]["mean"]["accel1_rms"] == pytest.approx(0.5)
        assert points[0]["max"]["accel1_rms"] == pytest.approx(0.6)


def test_an_evidence_image_uploaded_by_the_edge_is_served_to_the_sites_users(
    tmp_path: Path,
) -> None:
    evidence = tmp_path / "evidence"
    (evidence / "b1-cam-1").mkdir(parents=True)
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"
    (evidence / "b1-cam-1" / "42.jpg").write_bytes(jpeg)
    (evidence / "b1-cam-1" / "bad.jpg").write_bytes(b"not a jpeg")
    with harness(f"sqlite:///{tmp_path}/cloud.db") as h:
        install(h.client.app)  # type: ignore[arg-type]
        h.client.headers.update(h.gateway("s1"))
        upload_evidence(h.client, evidence, "b1-cam-1/42.jpg")
        upload_evidence(h.client, evidence, "b1-cam-1/42.jpg")
        with pytest.raises(SummaryRejected, match="415"):
            upload_evidence(h.client, evidence, "b1-cam-1/bad.jpg")
        with pytest.raises(SummaryRejected, match="outside"):
            upload_evidence(h.client, evidence, "../cloud.db")
        with pytest.raises(SummaryRejected, match="cannot read"):
            upload_evidence(h.client, evidence, "b1-cam-1/missing.jpg")
        del h.client.headers["Authorization"]
        viewer = h.user("vic", "viewer", ["s1"])
        image = h.client.get("/api/v1/evidence/s1/b1-cam-1/42.jpg", headers=viewer)
        assert image.status_code == 200
        assert image.content == jpeg
