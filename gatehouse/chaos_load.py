"""Load with a known ground truth: device-native gate events, and a switchable telemetry sink.

:class:`NativeEventLoad` plays a set of access gates that publish device-native events
(``gh/{site}/access_gate/{gate}/event``, ``{"ts", "type"}``) at QoS 1 at a steady rate.
Every event has a data timestamp unique per gate, so its cloud ``event_id`` is known in
advance (``make_event_id(site, gate, type, ts, "raised")``). An event enters the ground
truth once the broker has acknowledged it (PUBACK): from then on the broker, the edge's
persistent session and the edge's outbox are responsible for it. Events the broker has not
acknowledged within ``republish_after`` seconds (the broker was restarting) are published
again with the same payload; the copy has the same id, so it can never count twice.

:class:`FakeTsdb` is an InfluxDB ``/api/v2/write`` endpoint that counts the lines it stores
and can be switched to answer 503, so that the edge spools telemetry and, past its bound,
evicts it.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from device_profiles.messages import make_event_id

log = logging.getLogger("gatehouse.chaos")

NATIVE_TYPES: tuple[tuple[str, str, str], ...] = (
    # (payload type, event type, severity in the access_gate profile)
    ("forced_open", "gate.forced_open", "critical"),
    ("held_open", "gate.held_open", "warning"),
    ("tamper", "gate.tamper", "critical"),
)


@dataclass(frozen=True)
class SentEvent:
    """One device-native event of the ground truth."""

    event_id: str
    device_id: str
    type: str
    severity: str
    ts: float


@dataclass
class _Pending:
    event: SentEvent
    topic: str
    payload: bytes
    info: Any
    published_at: float


class NativeEventLoad:
    """Publish ``total`` gate events at ``rate`` per second from ``gates``; record the truth.

    ``start()`` runs a background thread; ``wait_confirmed(timeout)`` blocks until every
    event was published and acknowledged by the broker. ``confirmed`` is the ground truth
    (event id -> event); ``unconfirmed`` lists events the broker never acknowledged.
    """

    def __init__(self, *, host: str, port: int, site_id: str, gates: list[str], total: int,
                 rate: float, client_id: str = "chaos-native-load",
                 republish_after: float = 20.0, truth_path: Path | None = None) -> None:
        if total < 0 or rate <= 0 or not gates:
            raise ValueError("NativeEventLoad needs total >= 0, rate > 0 and at least one gate")
        self.host, self.port, self.site_id = host, port, site_id
        self.gates, self.total, self.rate = list(gates), total, rate
        self.client_id = client_id
        self.republish_after = republish_after
        self.truth_path = truth_path
        self.confirmed: dict[str, SentEvent] = {}
        self.published = 0
        self.republished = 0
        self.errors = 0
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._client: Any = None
        self._last_ts: dict[str, float] = {}

    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.connect(self.host, self.port, keepalive=10)
        client.loop_start()
        self._client = client
        self._thread.start()

    @property
    def unconfirmed(self) -> list[SentEvent]:
        with self._lock:
            return [p.event for p in self._pending.values()]

    @property
    def finished_publishing(self) -> bool:
        return self._done.is_set()

    def progress(self) -> dict[str, int]:
        with self._lock:
            return {"published": self.published, "confirmed": len(self.confirmed),
                    "pending": len(self._pending), "republished": self.republished,
                    "errors": self.errors}

    def wait_confirmed(self, timeout: float) -> bool:
        """Wait until all events were published and acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._safe_check()
            with self._lock:
                if self._done.is_set() and not self._pending:
                    return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self.truth_path is not None:
            with open(self.truth_path, "w", encoding="utf-8") as out:
                for event in sorted(self.confirmed.values(), key=lambda e: e.ts):
                    out.write(json.dumps(event.__dict__) + "\n")

    def _next_event(self, i: int) -> tuple[SentEvent, str, bytes]:
        gate = self.gates[i % len(self.gates)]
        payload_type, event_type, severity = NATIVE_TYPES[(i // len(self.gates)) % 3]
        ts = round(time.time(), 3)
        last = self._last_ts.get(gate, 0.0)
        if ts <= last:
            ts = round(last + 0.001, 3)
        self._last_ts[gate] = ts
        event = SentEvent(make_event_id(self.site_id, gate, event_type, ts, "raised"),
                          gate, event_type, severity, ts)
        topic = f"gh/{self.site_id}/access_gate/{gate}/event"
        return event, topic, json.dumps({"ts": ts, "type": payload_type}).encode()

    def _run(self) -> None:
        start = time.monotonic()
        i = 0
        while i < self.total and not self._stop.is_set():
            due = start + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.5))
                continue
            event, topic, payload = self._next_event(i)
            try:
                info = self._client.publish(topic, payload, qos=1)
            except Exception:  # the load must go on: count, log, retry this event
                self.errors += 1
                log.exception("chaos load: publishing event %d failed; retrying", i)
                time.sleep(0.5)
                continue
            with self._lock:
                self._pending[event.event_id] = _Pending(event, topic, payload, info,
                                                         time.monotonic())
                self.published += 1
            i += 1
            if i % 50 == 0:
                self._safe_check()
        self._done.set()
        while not self._stop.is_set():
            self._safe_check()
            time.sleep(0.5)

    def _safe_check(self) -> None:
        try:
            self._check()
        except Exception:  # the load thread must survive a failed republish
            self.errors += 1
            log.exception("chaos load: checking acknowledgements failed; continuing")

    def _check(self) -> None:
        """Move acknowledged events into the truth; publish again those the client refused
        while disconnected (once it is connected) and those unacknowledged for too long."""
        now = time.monotonic()
        with self._lock:
            connected = bool(self._client.is_connected())
            for key, pending in list(self._pending.items()):
                try:
                    published = bool(pending.info.is_published())
                    refused = False
                except (RuntimeError, ValueError):
                    published, refused = False, True
                if published:
                    self.confirmed[key] = pending.event
                    del self._pending[key]
                elif (refused and connected) or (
                        now - pending.published_at > self.republish_after):
                    pending.info = self._client.publish(pending.topic, pending.payload, qos=1)
                    pending.published_at = now
                    self.republished += 1


class FakeTsdb:
    """``POST /api/v2/write`` that stores nothing but counts lines; ``up = False`` -> 503.

    Stands in for the time-series database so the suite can make the edge spool telemetry
    (and evict past the spool's bound) without running a real database.
    """

    def __init__(self) -> None:
        self.up = True
        self.lines = 0
        self.writes = 0
        self.refused = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not fake.up:
                    fake.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                lines = sum(1 for line in body.splitlines() if line.strip())
                fake.lines += lines
                fake.writes += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self.send_response(200 if fake.up else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-tsdb",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
