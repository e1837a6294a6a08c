"""Fakes and helpers for the edge agent's tests (a fake message source, a fake cloud,
fake monitors, site builders and a throwaway TLS PKI for Mosquitto)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from device_profiles.messages import Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import CloudConfig, DeviceConfig, MqttConfig, SiteConfig
from edge.detectors.base import DeviceMonitor, Finding, MonitorBase
from edge.mqtt_input import InboundMessage


def make_site(
    site_id: str = "s1",
    *,
    data_dir: Path | None = None,
    mqtt_url: str = "mqtt://127.0.0.1:1",
    cloud_url: str = "http://cloud.test",
    token: str | None = "gw-token",
    devices: list[DeviceConfig] | None = None,
    mqtt: MqttConfig | None = None,
    **cloud: Any,
) -> SiteConfig:
    """A small explicit site: one pump, one elevator, one gate (unless ``devices``)."""
    if devices is None:
        devices = [
            DeviceConfig(id="pump-1", kind="water_pump"),
            DeviceConfig(id="elev-1", kind="elevator"),
            DeviceConfig(id="gate-1", kind="access_gate"),
        ]
    return SiteConfig(
        site_id=site_id,
        gateway_id="gw-test",
        data_dir=str(data_dir or "/nonexistent"),
        mqtt=mqtt or MqttConfig(url=mqtt_url, client_id=f"edge-test-{site_id}"),
        cloud=CloudConfig(url=cloud_url, token=token, retry_initial=0.05, retry_max=0.2, **cloud),
        devices=devices,
    )


def pump_payload(ts: float, **over: float) -> bytes:
    values: dict[str, float] = {
        "ts": ts, "accel1_rms": 0.2, "accel2_rms": 0.25, "current_a": 3.0, "pressure_bar": 3.0,
    }
    values.update(over)
    return json.dumps(values).encode()


class FakeSource:
    """A message source driven by the test: :meth:`push` delivers, acks are recorded."""

    def __init__(self, sink: Callable[[InboundMessage], None]) -> None:
        self.sink = sink
        self.connected = False
        self.last_error = ""
        self.acked: list[int] = []
        self._mid = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self.connected = True

    def stop(self) -> None:
        self.connected = False

    def ack(self, message: InboundMessage) -> bool:
        with self._lock:
            self.acked.append(message.mid)
        return True

    def push(self, topic: str, payload: bytes, qos: int = 1) -> int:
        with self._lock:
            self._mid += 1
            mid = self._mid
        self.sink(InboundMessage(topic, payload, mid, qos, 1, 0.0))
        return mid


class SourceBox:
    """Captures the fake source the agent builds (``Agent(source_factory=box)``)."""

    def __init__(self) -> None:
        self.source: FakeSource | None = None

    def __call__(self, sink: Callable[[InboundMessage], None]) -> FakeSource:
        self.source = FakeSource(sink)
        return self.source

    @property
    def get(self) -> FakeSource:
        assert self.source is not None
        return self.source


class ThresholdMonitor(MonitorBase):
    """Raises ``event_type`` when ``field`` exceeds ``limit``, clears when it drops back."""

    def __init__(self, event_type: str, field: str, limit: float) -> None:
        self.event_type, self.field, self.limit = event_type, field, limit
        self.start: float | None = None

    def observe(self, reading: Reading) -> list[Finding]:
        value = reading.values.get(self.field)
        if value is None:
            return []
        if value > self.limit and self.start is None:
            self.start = reading.ts
            return [Finding(self.event_type, "raised", reading.ts, reading.ts, {"value": value})]
        if value <= self.limit and self.start is not None:
            start, self.start = self.start, None
            return [Finding(self.event_type, "cleared", reading.ts, start, {"value": value})]
        return []


def fake_monitors(profile: DeviceProfile, device: DeviceConfig) -> list[DeviceMonitor]:
    """Pump: dry-running (critical) when current > 10 A, bearing wear (warning) when
    accel1 > 1 g. Other kinds: nothing."""
    if profile.kind != "water_pump":
        return []
    return [
        ThresholdMonitor("pump.dry_running", "current_a", 10.0),
        ThresholdMonitor("pump.bearing_wear", "accel1_rms", 1.0),
    ]


@dataclass
class FakeCloud:
    """An in-memory ``POST /api/v1/events`` with switchable failures (an httpx transport)."""

    token: str = "gw-token"
    down: bool = False
    status: int | None = None
    reject: set[str] = field(default_factory=set)
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls += 1
            if self.down:
                raise httpx.ConnectError("cloud is down", request=request)
            if request.url.path != "/api/v1/events":
                return httpx.Response(404, json={"detail": "not found"})
            if self.status is not None:
                return httpx.Response(self.status, text="forced")
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return httpx.Response(401, json={"detail": "bad token"})
            events = json.loads(request.content)["events"]
            ids = [e["event_id"] for e in events]
            self.batches.append(ids)
            result: dict[str, list[Any]] = {"accepted": [], "duplicates": [], "rejected": []}
            for event in events:
                eid = event["event_id"]
                if eid in self.reject:
                    result["rejected"].append({"event_id": eid, "reason": "unknown device"})
                elif eid in self.received:
                    result["duplicates"].append(eid)
                else:
                    self.received[eid] = event
                    result["accepted"].append(eid)
            return httpx.Response(200, json=result)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


def profiles_of(kinds: Mapping[str, DeviceProfile], *names: str) -> dict[str, DeviceProfile]:
    return {k: kinds[k] for k in names}


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> Pki:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
        "-out", "ca.crt", "-subj", "/CN=gatehouse-test-ca")
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", "gatehouse-edge")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={cn}")
        extra = ["-extfile", "san.cnf"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra)
    return Pki(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt", server_key=directory / "server.key",
        client_cert=directory / "client.crt", client_key=directory / "client.key",
    )


class Publisher:
    """A device-side MQTT client for tests: publish, then :meth:`flush` waits for PUBACKs."""

    def __init__(
        self,
        port: int,
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username:
            self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._infos: list[Any] = []
        self.reason_codes: list[int] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._infos.append(self.client.publish(topic, payload, qos=qos, retain=retain))

    def flush(self, timeout: float = 30.0) -> None:
        for info in self._infos:
            info.wait_for_publish(timeout)
        self._infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


class HttpFakeCloud:
    """:class:`FakeCloud` served over real HTTP on 127.0.0.1 (for agents in subprocesses)."""

    def __init__(
        self, cloud: FakeCloud | None = None, *, tls: tuple[Path, Path] | None = None
    ) -> None:
        """``tls``: (certificate, key) to serve HTTPS instead of HTTP."""
        import ssl
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.cloud = cloud or FakeCloud()
        fake = self.cloud

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = httpx.Request(
                    "POST", f"http://cloud{self.path}", content=body,
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                try:
                    response = fake.handler(request)
                except httpx.ConnectError:
                    self.close_connection = True
                    return
                self.send_response(response.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
