"""A private VictoriaMetrics for the telemetry tests, and a small client to read it back.

VictoriaMetrics (Debian package ``victoria-metrics``) accepts InfluxDB line protocol on
``/api/v2/write`` and answers PromQL/MetricsQL, so one server checks both the writer and the
Grafana panel queries. The instance runs on a free port with its own data folder; it hides no
recent samples (``-search.latencyOffset=0s``) and caches no query results
(``-search.disableCache``), because the tests write history and query it straight away.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import ServerUnavailable, ensure_debian_package, free_port

Series = dict[str, Any]


@dataclass
class VictoriaMetrics:
    """A private VictoriaMetrics; ``restart()`` keeps its port and its data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = ensure_debian_package("victoria-metrics", "victoria-metrics")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "vm.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={self.workdir / 'data'}",
                "-retentionPeriod=100y",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=WARN",
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                if self.get_text("/health") == "OK":
                    return
            time.sleep(0.05)
        tail = (self.workdir / "vm.log").read_text(errors="replace")[-800:]
        self.stop()
        raise ServerUnavailable(f"victoria-metrics did not become healthy: {tail}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- reading back -------------------------------------------------------------------

    def get_text(self, path: str, params: dict[str, str] | None = None) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            return str(resp.read().decode())

    def post(self, path: str, body: bytes) -> None:
        req = urllib.request.Request(f"{self.url}{path}", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def flush(self) -> None:
        """Make everything written so far searchable."""
        self.get_text("/internal/force_flush")

    def export(self, match: str) -> list[Series]:
        """Raw samples of every series matching ``match`` (``/api/v1/export``)."""
        self.flush()
        text = self.get_text("/api/v1/export", {"match[]": match})
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def query(self, expr: str, at: float) -> list[Series]:
        """An instant query (``/api/v1/query``); raises with VictoriaMetrics' message."""
        return self._api("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})

    def query_range(self, expr: str, start: float, end: float, step: str) -> list[Series]:
        """A range query (``/api/v1/query_range``), as Grafana runs a time-series panel."""
        return self._api(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step},
        )

    def label_values(self, label: str) -> list[str]:
        data = json.loads(self.get_text(f"/api/v1/label/{label}/values"))
        return list(data["data"])

    def wait_for(
        self, match: str, ready: Callable[[list[Series]], bool], timeout: float = 20.0
    ) -> list[Series]:
        """Poll ``export(match)`` until ``ready`` holds (flushing each time) or fail."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.export(match)
            if ready(series):
                return series
            if time.monotonic() > deadline:
                raise AssertionError(f"{match}: not ready within {timeout}s; got {series[:3]}")
            time.sleep(0.1)

    def _api(self, path: str, params: dict[str, str]) -> list[Series]:
        try:
            text = self.get_text(path, params)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{params['query']!r}: {exc.read().decode()[:500]}") from exc
        data = json.loads(text)
        if data.get("status") != "success":
            raise AssertionError(f"{params['query']!r}: {data}")
        result: list[Series] = data["data"]["result"]
        return result


@contextlib.contextmanager
def victoria_metrics(workdir: Path, extra_args: tuple[str, ...] = ()) -> Iterator[VictoriaMetrics]:
    """Start a private VictoriaMetrics in ``workdir``; stop it afterwards."""
    server = VictoriaMetrics(workdir=workdir, extra_args=extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
