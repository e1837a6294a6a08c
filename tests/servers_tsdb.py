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
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, EventState, Forecast, Reading, make_event_id
from device_profiles.site import DeviceConfig, EstateLayout, SiteConfig
from gatehouse.processes import terminate_process
from simulators.models.base import FaultSpec
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
        if self.proc is not None:
            terminate_process(self.proc, 15)
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
    """Telemetry and events of a small estate over the last 6 hours (meters: also a week ago).

    The telemetry comes from the simulator's device models (``simulate_offline``) with faults
    injected, so what the dashboards must show is known by construction: ``silent`` devices
    stop reporting 30 minutes before ``end`` (an offline fault); one pump's bearing wears and
    one elevator's door slows down over the 6 hours; one meter spikes 90 to 60 minutes before
    ``end``; a gate is forced open and an elevator traps a passenger (``critical`` events).
    The events are what the edge would raise for those faults, each with the profile's
    severity; the pump's bearing-wear forecast is ``latest_pump_forecast``.
    """

    site: SiteConfig
    end: float
    readings: list[Reading]
    events: list[Event]
    faults: list[FaultSpec]
    silent: frozenset[str]
    critical: int
    latest_pump_forecast: dict[str, float]


def simulated_estate(site_id: str, end: float, seed: int = 7) -> SimulatedEstate:
    """Build the estate's readings and events ending at ``end`` (epoch seconds)."""
    from simulators.models.offline import simulate_offline

    profiles = load_profiles()
    site = SiteConfig(
        site_id=site_id,
        estate=EstateLayout(
            buildings=2,
            floors=12,
            elevators_per_building=2,
            pumps_per_building=1,
            meters_per_building=2,
            gates=2,
            cameras_per_building=1,
        ),
    )
    end = float(int(end))
    start = end - 6 * 3600
    faults = [
        FaultSpec("b1-pump-1", "pump.bearing_wear", start, end + 3600),
        FaultSpec("b1-elev-1", "elevator.door_wear", start, end + 3600),
        FaultSpec("b1-elev-2", "elevator.entrapment", end - 10800, end - 10500),
        FaultSpec("gate-1", "gate.tailgating", end - 3000, end - 2700),
        FaultSpec("gate-1", "gate.forced_open", end - 2400, end - 2370),
        FaultSpec("gate-2", "gate.offline", end - 1800, end + 3600),
        FaultSpec(
            "b2-meter-2",
            "meter.energy_spike",
            end - 5400,
            end - 3600,
            {"factor": 4.0, "add_kw": 10.0},
        ),
    ]
    devices = site.all_devices()
    meters = [d for d in devices if d.kind == "smart_meter"]
    others = [d for d in devices if d.kind != "smart_meter"]
    readings: list[Reading] = []
    week = 7 * 86400
    margin = 600.0
    meter_faults = [f for f in faults if f.device_id.startswith("b2-meter")]
    runs: list[tuple[list[DeviceConfig], float, float, list[FaultSpec]]] = [
        # Meters: the last 6 hours and the same hours a week earlier (the baseline panels).
        (meters, start - week - margin, end - week + margin, []),
        (meters, start - margin, end, meter_faults),
        (others, start, end, [f for f in faults if f not in meter_faults]),
    ]
    for group, since, until, group_faults in runs:
        for device, sample in simulate_offline(
            group, since, until + 0.001, group_faults, seed=seed, floors=12
        ):
            if sample.values:
                readings.append(
                    Reading(site_id, device.kind, device.id, sample.ts, dict(sample.values))
                )

    kinds = {d.id: d.kind for d in devices}

    def event(spec: FaultSpec, state: EventState, ts: float, hours: float | None = None) -> Event:
        kind = kinds[spec.device_id]
        forecast = None
        if hours is not None:
            field_name = "accel1_rms" if kind == "water_pump" else "door_cycle_s"
            limit = profiles[kind].fields[field_name].limit
            assert limit is not None
            forecast = Forecast(field=field_name, limit=limit, hours_to_limit=hours)
        return Event(
            event_id=make_event_id(site_id, spec.device_id, spec.type, spec.start, state),
            site_id=site_id,
            gateway_id=site.gateway_id,
            device_id=spec.device_id,
            kind=kind,
            type=spec.type,
            severity=profiles[kind].events[spec.type].severity,
            state=state,
            ts=ts,
            evidence={"score": 0.9, "threshold": 0.5},
            forecast=forecast,
        )

    events: list[Event] = []
    for spec in faults:
        if spec.type == "pump.bearing_wear":
            events.append(event(spec, "raised", end - 3600, hours=30.0))
        elif spec.type == "elevator.door_wear":
            events.append(event(spec, "raised", end - 1800, hours=120.0))
        else:
            events.append(event(spec, "raised", spec.start))
            if spec.end <= end:
                events.append(event(spec, "cleared", spec.end))
    critical = sum(e.severity == "critical" and e.state == "raised" for e in events)
    return SimulatedEstate(
        site=site,
        end=end,
        readings=readings,
        events=events,
        faults=faults,
        silent=frozenset({"gate-2"}),
        critical=critical,
        latest_pump_forecast={"b1-pump-1": 30.0},
    )
