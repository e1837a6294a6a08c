"""Self-metrics of the agent, and the tiny HTTP server that shows them.

:class:`Metrics` holds labelled counters and gauges; collectors (callables) add gauges that
are read at scrape time (outbox depth, disk state). :class:`HealthServer` serves
``/healthz`` (JSON; HTTP 200 when ``ok``, 503 when ``degraded`` or ``down``) and
``/metrics`` (Prometheus text format), plus extra JSON pages (the agent adds
``/deadletters``), from a stdlib ``ThreadingHTTPServer`` thread.
Secrets never appear here: only counts, ages and states.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

PREFIX = "gatehouse_edge_"
Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Mapping[str, str], float]
Collector = Callable[[], Iterable[Sample]]


def _key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Metrics:
    """Thread-safe counters and gauges with labels; names get the ``gatehouse_edge_`` prefix."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[tuple[str, Labels], float] = {}
        self._collectors: list[Collector] = []

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to counter ``name`` (``_total`` is appended when exposed)."""
        key = (name, _key(labels))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set gauge ``name``."""
        with self._lock:
            self._gauges[(name, _key(labels))] = value

    def counter(self, name: str, **labels: str) -> float:
        """Current value of one counter (0 when never incremented)."""
        with self._lock:
            return self._counters.get((name, _key(labels)), 0.0)

    def counters_by(self, name: str, label: str) -> dict[str, float]:
        """Counter ``name`` split by the values of one label, e.g. rejects by reason."""
        with self._lock:
            out: dict[str, float] = {}
            for (n, labels), value in self._counters.items():
                if n == name:
                    lv = dict(labels).get(label, "")
                    out[lv] = out.get(lv, 0.0) + value
            return out

    def add_collector(self, collector: Collector) -> None:
        """Register a callable read at every scrape that yields gauge samples."""
        with self._lock:
            self._collectors.append(collector)

    def render(self) -> str:
        """The Prometheus text exposition of every counter and gauge."""
        with self._lock:
            counters = sorted(self._counters.items())
            gauges = dict(self._gauges)
            collectors = list(self._collectors)
        for collector in collectors:
            for gname, glabels, gvalue in collector():
                gauges[(gname, _key(glabels))] = gvalue
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in counters:
            full = f"{PREFIX}{name}_total"
            if full not in seen:
                lines.append(f"# TYPE {full} counter")
                seen.add(full)
            lines.append(f"{full}{_fmt_labels(labels)} {_fmt_value(value)}")
        for (name, labels), value in sorted(gauges.items()):
            full = f"{PREFIX}{name}"
            if full not in seen:
                lines.append(f"# TYPE {full} gauge")
                seen.add(full)
            lines.append(f"{full}{_fmt_labels(labels)} {_fmt_value(value)}")
        return "\n".join(lines) + "\n"


def _fmt_value(value: float) -> str:
    """A sample value at full precision (``:g`` kept six digits: a counter past a million
    or a Unix timestamp lost its last digits); Prometheus' spellings for the infinities."""
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def _fmt_labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + body + "}"


class HealthServer:
    """``/healthz`` and ``/metrics`` over HTTP on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        metrics: Metrics,
        health: Callable[[], Mapping[str, Any]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: Mapping[str, Callable[[Mapping[str, str]], Any]] | None = None,
    ) -> None:
        """``routes``: extra JSON pages by path; each gets the query parameters."""
        self._metrics = metrics
        self._health = health
        self._routes = dict(routes or {})
        handler = self._handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="edge-health-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        metrics, health, routes = self._metrics, self._health, self._routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path in routes:
                    params = {k: v[-1] for k, v in parse_qs(query).items()}
                    try:
                        body = json.dumps(routes[path](params)).encode()
                    except ValueError as exc:
                        self._reply(400, "text/plain", f"{exc}\n".encode())
                        return
                    self._reply(200, "application/json", body)
                elif path == "/metrics":
                    body = metrics.render().encode()
                    self._reply(200, "text/plain; version=0.0.4", body)
                elif path == "/healthz":
                    state = dict(health())
                    code = 200 if state.get("status") == "ok" else 503
                    self._reply(code, "application/json", json.dumps(state).encode())
                else:
                    pages = ", ".join(["/healthz", "/metrics", *routes])
                    self._reply(404, "text/plain", f"not found: try {pages}\n".encode())

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health http: " + format, *args)

        return Handler
