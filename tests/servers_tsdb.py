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
import math
import random
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

from device_profiles.messages import Event, EventState, Forecast, Reading, make_event_id
from device_profiles.site import EstateLayout, SiteConfig
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


# --- a simulated estate to load into the database -----------------------------------------


@dataclass
class SimulatedEstate:
    """Telemetry and events of a small estate over the last hours (meters: the last 8 days).

    Deterministic for a given ``seed`` and ``end``. What the dashboards must show is known by
    construction: ``silent`` devices stop reporting 30 minutes before ``end``; one pump's
    drive-end vibration trends up with forecasts; one meter spikes 90 to 60 minutes before
    ``end``; ``critical`` critical events are raised.
    """

    site: SiteConfig
    end: float
    readings: list[Reading]
    events: list[Event]
    silent: frozenset[str]
    critical: int
    latest_pump_forecast: dict[str, float]


def simulated_estate(site_id: str, end: float, seed: int = 7) -> SimulatedEstate:
    """Build the estate's readings and events ending at ``end`` (epoch seconds)."""
    rng = random.Random(seed)
    site = SiteConfig(
        site_id=site_id,
        estate=EstateLayout(
            buildings=2,
            floors=12,
            elevators_per_building=2,
            pumps_per_building=2,
            meters_per_building=3,
            gates=2,
            cameras_per_building=1,
        ),
    )
    end = float(int(end))
    hours6 = end - 6 * 3600
    silent = frozenset({"gate-2"})
    readings: list[Reading] = []

    def emit(kind: str, device: str, ts: float, values: dict[str, float]) -> None:
        if device in silent and ts > end - 1800:
            return
        readings.append(Reading(site_id, kind, device, ts, values))

    for dev in site.all_devices():
        if dev.kind == "smart_meter":
            base = 3.0 if dev.params.get("common_area") else 0.8 + 0.1 * rng.random()
            energy = 1000.0 * rng.random()
            ts = end - 8 * 86400
            while ts <= end:
                hour = (ts % 86400) / 3600
                kw = base * (1 + 0.6 * math.sin(2 * math.pi * (hour - 9) / 24))
                kw *= 1 + rng.gauss(0, 0.03)
                if dev.id == "b2-meter-2" and end - 5400 <= ts < end - 3600:
                    kw = kw * 4 + 5
                energy += kw / 60
                amps = kw * 1000 / (3 * 230)
                emit(
                    "smart_meter",
                    dev.id,
                    ts,
                    {
                        "power_kw": round(kw, 4),
                        "energy_kwh": round(energy, 4),
                        "voltage_l1_v": 230 + rng.gauss(0, 1.5),
                        "voltage_l2_v": 231 + rng.gauss(0, 1.5),
                        "voltage_l3_v": 229 + rng.gauss(0, 1.5),
                        "current_l1_a": amps,
                        "current_l2_a": amps * 0.95,
                        "current_l3_a": amps * 1.05,
                        "power_factor": 0.95,
                    },
                )
                ts += 60
        elif dev.kind == "elevator":
            floor = 0
            ts = hours6
            while ts <= end:
                moving = rng.random() < 0.4
                if moving:
                    floor = max(0, min(12, floor + rng.choice((-3, -1, 1, 2, 4))))
                wear = (ts - hours6) / (end - hours6) if dev.id == "b1-elev-1" else 0.0
                emit(
                    "elevator",
                    dev.id,
                    ts,
                    {
                        "floor": float(floor),
                        "at_landing": float(not moving),
                        "moving": float(moving),
                        "door_open": float(not moving and rng.random() < 0.5),
                        "load_kg": max(0.0, rng.gauss(150, 80)) if moving else 0.0,
                        "speed_mps": 1.5 if moving else 0.0,
                        "door_cycle_s": 5.5 + 3.5 * wear + rng.gauss(0, 0.2),
                        "door_reversals": float(rng.random() < 0.05),
                        "door_close_failures": 0.0,
                        "leveling_error_mm": rng.gauss(0, 3),
                        "vibration_rms": abs(rng.gauss(0.3, 0.05)),
                        "motor_current_a": 25 + rng.gauss(0, 2) if moving else 2.0,
                        "trips": float(rng.randint(0, 3)),
                    },
                )
                ts += 20
        elif dev.kind == "water_pump":
            ts = hours6
            while ts <= end:
                wear = (ts - hours6) / (end - hours6) if dev.id == "b1-pump-1" else 0.0
                emit(
                    "water_pump",
                    dev.id,
                    ts,
                    {
                        "accel1_rms": 0.2 + 0.25 * wear + abs(rng.gauss(0, 0.01)),
                        "accel2_rms": 0.25 + abs(rng.gauss(0, 0.01)),
                        "current_a": 3.5 + rng.gauss(0, 0.05),
                        "pressure_bar": 3 + rng.gauss(0, 0.05),
                        "temperature_c": 60 + rng.gauss(0, 0.5),
                        "thermocouple_c": 25 + rng.gauss(0, 0.2),
                        "voltage_v": 230 + rng.gauss(0, 1),
                        "flow_lpm": 120 + rng.gauss(0, 2),
                    },
                )
                ts += 30
        elif dev.kind == "access_gate":
            ts = hours6
            while ts <= end:
                grants = rng.randint(0, 3)
                passages = grants + (1 if rng.random() < 0.05 else 0)
                door_open = passages > 0
                emit(
                    "access_gate",
                    dev.id,
                    ts,
                    {
                        "door_open": float(door_open),
                        "door_open_s": 4.0 if door_open else 0.0,
                        "passages": float(passages),
                        "grants": float(grants),
                        "denials": float(rng.random() < 0.1),
                        "tamper": 0.0,
                    },
                )
                ts += 30
        elif dev.kind == "camera":
            ts = hours6
            while ts <= end:
                emit(
                    "camera",
                    dev.id,
                    ts,
                    {
                        "fps": 25 + rng.gauss(0, 0.5),
                        "frame_drops": 0.0,
                        "reconnects": 0.0,
                    },
                )
                ts += 60

    def event(
        device: str,
        kind: str,
        etype: str,
        severity: str,
        state: EventState,
        ts: float,
        hours: float | None = None,
        field_name: str = "accel1_rms",
        limit: float = 0.5,
    ) -> Event:
        forecast = None
        if hours is not None:
            forecast = Forecast(field=field_name, limit=limit, hours_to_limit=hours)
        return Event.model_validate(
            {
                "event_id": make_event_id(site_id, device, etype, ts, state),
                "site_id": site_id,
                "gateway_id": site.gateway_id,
                "device_id": device,
                "kind": kind,
                "type": etype,
                "severity": severity,
                "state": state,
                "ts": ts,
                "evidence": {"score": 0.9, "threshold": 0.5},
                "forecast": forecast,
            }
        )

    events = [
        event(
            "b1-pump-1",
            "water_pump",
            "pump.bearing_wear",
            "warning",
            "raised",
            end - 7200,
            hours=40.0,
        ),
        event(
            "b1-pump-1",
            "water_pump",
            "pump.bearing_wear",
            "warning",
            "raised",
            end - 3600,
            hours=30.0,
        ),
        event(
            "b1-elev-1",
            "elevator",
            "elevator.door_wear",
            "info",
            "raised",
            end - 1800,
            hours=120.0,
            field_name="door_cycle_s",
            limit=12.0,
        ),
        event("b2-meter-2", "smart_meter", "meter.energy_spike", "warning", "raised", end - 5300),
        event("b2-meter-2", "smart_meter", "meter.energy_spike", "warning", "cleared", end - 3500),
        event("gate-1", "access_gate", "gate.forced_open", "critical", "raised", end - 2400),
        event("b1-elev-2", "elevator", "elevator.entrapment", "critical", "raised", end - 10800),
        event("b1-elev-2", "elevator", "elevator.entrapment", "critical", "cleared", end - 10500),
        event("gate-2", "access_gate", "gate.offline", "warning", "raised", end - 1740),
    ]
    return SimulatedEstate(
        site=site,
        end=end,
        readings=readings,
        events=events,
        silent=silent,
        critical=2,
        latest_pump_forecast={"b1-pump-1": 30.0},
    )
