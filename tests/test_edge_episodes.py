"""Detector episodes survive restarts and crashes: the durable episode registry.

Unit tests drive :class:`EpisodeRegistry` and :class:`Detection` with scripted monitors;
the outbox tests show the registry is written in the same transaction as the events; the
agent tests restart an agent on the same data (cleanly, and from a copy of the data folder
taken while it runs: what a SIGKILL leaves); the integration test SIGKILLs a real
``gatehouse edge`` during an ongoing fault and counts what the cloud got.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, EventState, Reading, make_event_id
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig, dump_site
from edge.detection import NOT_CONFIRMED, Detection, EpisodeRegistry
from edge.detectors.base import DeviceMonitor, Finding, MonitorBase
from edge.metrics import Metrics
from edge.outbox import CRITICAL, EVENTS, EpisodeState, Outbox
from edge.runner import Agent, AgentOptions
from edge.sqlite_store import StoreError
from edge.validate import StatusChange
from tests.servers_edge import (
    FakeCloud,
    SourceBox,
    fake_monitors,
    make_site,
    pump_payload,
)

PROFILES = load_profiles()
SITE = "s1"
PUMP = "gh/s1/water_pump/pump-1/telemetry"
DRY = "pump.dry_running"


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


# --------------------------------------------------------------------------- the rules


def raised(start: float, ts: float | None = None, etype: str = DRY) -> Finding:
    return Finding(etype, "raised", start if ts is None else ts, start)


def cleared(start: float, ts: float, etype: str = DRY) -> Finding:
    return Finding(etype, "cleared", ts, start)


def admit(reg: EpisodeRegistry, finding: Finding, device: str = "pump-1") -> Finding | None:
    verdict = reg.judge(device, finding)
    reg.apply(device, finding, verdict)
    return verdict.finding


def test_a_raise_opens_and_a_second_raise_is_suppressed() -> None:
    reg = EpisodeRegistry()
    assert admit(reg, raised(10.0)) == raised(10.0)
    assert reg.open_start("pump-1", DRY) == 10.0
    verdict = reg.judge("pump-1", raised(50.0))
    assert verdict.outcome == "reraise_suppressed" and verdict.finding is None
    assert verdict.change is None
    assert reg.open_start("pump-1", "pump.leak") is None
    assert reg.open_start("pump-2", DRY) is None


def test_a_clear_carries_the_registrys_start_and_closes() -> None:
    reg = EpisodeRegistry()
    admit(reg, raised(10.0))
    admit(reg, raised(50.0))
    verdict = reg.judge("pump-1", cleared(50.0, ts=70.0))
    assert verdict.outcome == "emit"
    assert verdict.finding == cleared(10.0, ts=70.0)
    assert verdict.change == EpisodeState("pump-1", DRY, 10.0, 10.0, open=False)
    reg.apply("pump-1", cleared(50.0, ts=70.0), verdict)
    assert reg.open_start("pump-1", DRY) is None
    assert admit(reg, raised(80.0)) == raised(80.0), "after a clear a new episode opens"


def test_a_clear_of_nothing_open_is_suppressed() -> None:
    reg = EpisodeRegistry()
    verdict = reg.judge("pump-1", cleared(5.0, ts=6.0))
    assert verdict.outcome == "clear_suppressed" and verdict.finding is None


def test_judge_alone_changes_nothing() -> None:
    reg = EpisodeRegistry()
    reg.judge("pump-1", raised(1.0))
    assert reg.open_start("pump-1", DRY) is None


def test_restored_episodes_are_unconfirmed_until_raised_again() -> None:
    reg = EpisodeRegistry([EpisodeState("pump-1", DRY, 10.0, 12.0),
                           EpisodeState("pump-1", "pump.leak", 3.0, 3.0)])
    assert reg.unconfirmed("pump-1") == [DRY, "pump.leak"]
    assert admit(reg, raised(100.0)) is None
    assert reg.unconfirmed("pump-1") == ["pump.leak"]
    assert reg.stale("pump-1", 200.0, window_s=lambda _: 60.0) == []
    assert reg.stale("pump-1", 259.0, window_s=lambda _: 60.0) == []
    [stale] = reg.stale("pump-1", 260.0, window_s=lambda _: 60.0)
    assert (stale.event_type, stale.state, stale.episode_start, stale.ts) == (
        "pump.leak", "cleared", 3.0, 260.0)
    assert stale.evidence["reason"] == NOT_CONFIRMED
    assert admit(reg, stale) == stale
    assert reg.unconfirmed("pump-1") == []
    assert reg.stale("pump-1", 1000.0, window_s=lambda _: 60.0) == []
    assert reg.open_start("pump-1", DRY) == 10.0


# --------------------------------------------------------------------------- Detection


class Scripted(MonitorBase):
    """A monitor that returns the findings the test queues, on the next call of any kind."""

    def __init__(self) -> None:
        self.queue: list[Finding] = []

    def _next(self) -> list[Finding]:
        out, self.queue = self.queue, []
        return out

    def observe(self, reading: Reading) -> list[Finding]:
        return self._next()

    def tick(self, now: float) -> list[Finding]:
        return self._next()

    def on_status(self, ts: float, online: bool) -> list[Finding]:
        return self._next()


class ScriptedFactory:
    def __init__(self) -> None:
        self.monitors: dict[str, Scripted] = {}

    def __call__(self, profile: DeviceProfile, device: DeviceConfig) -> list[DeviceMonitor]:
        self.monitors[device.id] = Scripted()
        return [self.monitors[device.id]]


def reading(ts: float, device: str = "pump-1") -> Reading:
    return Reading(site_id=SITE, kind="water_pump", device_id=device, ts=ts,
                   values={"accel1_rms": 0.2, "accel2_rms": 0.2, "current_a": 3.0,
                           "pressure_bar": 3.0})


def detection(metrics: Metrics, **kw: Any) -> tuple[Detection, ScriptedFactory]:
    factory = ScriptedFactory()
    det = Detection(make_site(SITE), PROFILES, monitor_factory=factory, metrics=metrics, **kw)
    return det, factory


def ids(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.state, e.event_id) for e in events]


def eid(etype: str, start: float, state: EventState, device: str = "pump-1") -> str:
    return make_event_id(SITE, device, etype, start, state)


def test_readings_status_and_tick_paths_go_through_the_registry() -> None:
    metrics = Metrics()
    det, fx = detection(metrics)
    mon = fx.monitors["pump-1"]
    mon.queue = [raised(1.0)]
    assert ids(det.observe(reading(1.0))) == [(DRY, "raised", eid(DRY, 1.0, "raised"))]
    mon.queue = [raised(2.0)]
    assert det.status(StatusChange(site_id=SITE, kind="water_pump", device_id="pump-1",
                                   ts=2.0, online=False)) == []
    mon.queue = [raised(3.0)]
    assert det.tick(3.0) == []
    assert metrics.counter("episodes_reraise_suppressed") == 2
    mon.queue = [cleared(3.0, ts=4.0)]
    assert ids(det.tick(4.0)) == [(DRY, "cleared", eid(DRY, 1.0, "cleared"))]
    mon.queue = [cleared(3.0, ts=5.0)]
    assert det.observe(reading(5.0)) == []
    assert metrics.counter("episodes_clear_suppressed") == 1


def test_a_repeated_offline_status_is_one_episode() -> None:
    """The real offline detector: a second ``offline`` (the simulator's goodbye, a retained
    status redelivered after a restart) belongs to the open episode."""
    site = make_site(SITE)
    metrics = Metrics()
    first = Detection(site, PROFILES, metrics=metrics)

    def offline(det: Detection, ts: float) -> list[Event]:
        return det.status(StatusChange(site_id=SITE, kind="water_pump", device_id="pump-1",
                                       ts=ts, online=False))

    [event] = offline(first, 100.0)
    assert offline(first, 100.054) == []
    changes = first.take_episode_changes()
    assert list(changes) == [event.event_id]
    again = Detection(site, PROFILES, metrics=metrics)
    again.restore(changes.values())
    assert offline(again, 160.0) == [], "a fresh detector re-raising is the same episode"
    assert metrics.counter("episodes_reraise_suppressed") == 1


def test_a_status_stamped_behind_the_device_clock_follows_its_readings() -> None:
    """The simulator's data runs ahead of the agent's clock: an ``offline`` stamped by the
    agent after the reading that cleared the last offline episode must not sort before it."""
    det = Detection(make_site(SITE), PROFILES, metrics=Metrics())

    def offline(ts: float) -> list[Event]:
        return det.status(StatusChange(site_id=SITE, kind="water_pump", device_id="pump-1",
                                       ts=ts, online=False))

    [first] = offline(100.0)
    back = [e for e in det.observe(reading(500.0)) if e.type == "pump.offline"]
    assert [(e.state, e.ts) for e in back] == [("cleared", 500.0)]
    [second] = offline(101.0)
    assert second.state == "raised" and second.ts == 500.0
    assert second.event_id == eid("pump.offline", 500.0, "raised")
    assert first.event_id == eid("pump.offline", 100.0, "raised")


def test_changes_are_reported_once_per_event() -> None:
    det, fx = detection(Metrics())
    fx.monitors["pump-1"].queue = [raised(1.0), cleared(1.0, ts=2.0)]
    events = det.observe(reading(1.0))
    changes = det.take_episode_changes()
    assert [changes[e.event_id].open for e in events] == [True, False]
    assert det.take_episode_changes() == {}


def test_stale_restored_episode_is_closed_after_the_window_of_fresh_data() -> None:
    metrics = Metrics()
    det, _ = detection(metrics, confirm_periods=10)
    assert det.restore([EpisodeState("pump-1", DRY, 500.0, 501.0)]) == 1
    for ts in range(1000, 1010):
        assert det.observe(reading(float(ts))) == [], "pump: 1 s sampling, 10 s window"
    [event] = det.observe(reading(1010.0))
    assert (event.type, event.state, event.event_id) == (DRY, "cleared",
                                                         eid(DRY, 500.0, "cleared"))
    assert event.evidence["reason"] == NOT_CONFIRMED
    assert det.take_episode_changes()[event.event_id].open is False
    assert metrics.counter("episodes_not_confirmed") == 1
    assert det.observe(reading(2000.0)) == []


def test_a_confirmed_restored_episode_stays_open_and_clears_with_its_start() -> None:
    det, fx = detection(Metrics(), confirm_periods=10)
    det.restore([EpisodeState("pump-1", DRY, 500.0, 501.0)])
    fx.monitors["pump-1"].queue = [raised(1005.0)]
    assert det.observe(reading(1005.0)) == []
    assert all(det.observe(reading(float(ts))) == [] for ts in range(1006, 1100))
    fx.monitors["pump-1"].queue = [cleared(1005.0, ts=1100.0)]
    assert ids(det.observe(reading(1100.0))) == [(DRY, "cleared", eid(DRY, 500.0, "cleared"))]


def test_a_restored_offline_episode_is_closed_by_the_first_fresh_reading() -> None:
    """The offline detector clears on any reading; a restored offline episode too, while
    the device's other restored episodes wait for their window."""
    metrics = Metrics()
    det = Detection(make_site(SITE), PROFILES, metrics=metrics)
    det.restore([EpisodeState("pump-1", "pump.offline", 40.0, 40.0),
                 EpisodeState("pump-1", "pump.leak", 30.0, 31.0)])
    events = [e for e in det.observe(reading(100.0)) if e.state == "cleared"]
    assert [(e.type, e.event_id) for e in events] == [
        ("pump.offline", eid("pump.offline", 40.0, "cleared"))]
    assert events[0].evidence["window_s"] == 0.0
    assert det.registry.unconfirmed("pump-1") == ["pump.leak"]


def test_restore_skips_unknown_devices_and_types() -> None:
    metrics = Metrics()
    det, _ = detection(metrics)
    n = det.restore([EpisodeState("gone-1", DRY, 1.0, 1.0),
                     EpisodeState("pump-1", "elevator.entrapment", 1.0, 1.0),
                     EpisodeState("pump-1", DRY, 1.0, 1.0)])
    assert n == 1 and metrics.counter("episodes_restore_skipped") == 2
    assert det.registry.open_start("pump-1", DRY) == 1.0


def test_a_finding_that_cannot_become_an_event_changes_nothing() -> None:
    metrics = Metrics()
    det, fx = detection(metrics)
    fx.monitors["pump-1"].queue = [raised(1.0, etype="pump.no_such_event")]
    assert det.observe(reading(1.0)) == []
    assert det.registry.open_start("pump-1", "pump.no_such_event") is None
    assert metrics.counter("detector_errors", detector="Scripted") == 1


def test_native_events_bypass_the_registry() -> None:
    from edge.validate import NativeEvent

    det, _ = detection(Metrics())
    out = [det.native(NativeEvent(site_id=SITE, kind="access_gate", device_id="gate-1",
                                  ts=float(ts), native_type="forced_open",
                                  event_type="gate.forced_open", state="raised"))
           for ts in (1, 2)]
    assert [len(x) for x in out] == [1, 1]
    assert det.take_episode_changes() == {}


# --------------------------------------------------------------------------- the outbox


def test_episode_changes_are_stored_with_their_events(tmp_path: Path) -> None:
    from edge.outbox import Entry

    box = Outbox(tmp_path / "o.db")
    opened = EpisodeState("pump-1", DRY, 1.0, 2.0)
    box.put_many([Entry(CRITICAL, "r1", b"{}", episode=opened),
                  Entry(EVENTS, "x", b"{}", episode=EpisodeState("pump-1", "pump.leak", 5, 5))])
    box.put_many([Entry(EVENTS, "c", b"{}",
                        episode=EpisodeState("pump-1", "pump.leak", 5, 5, open=False))])
    box.close()
    again = Outbox(tmp_path / "o.db")
    assert again.open_episodes() == [opened]
    again.close()


def test_a_failed_transaction_stores_neither_event_nor_episode(tmp_path: Path) -> None:
    """A trigger (made through a second connection) makes the registry write fail inside
    the transaction: the event must not be stored either."""
    from edge.outbox import Entry

    box = Outbox(tmp_path / "o.db")
    side = sqlite3.connect(tmp_path / "o.db")
    side.execute("CREATE TRIGGER refuse BEFORE INSERT ON episodes WHEN NEW.device_id = 'bad'"
                 " BEGIN SELECT RAISE(ABORT, 'refused'); END")
    side.commit()
    side.close()
    with pytest.raises(StoreError):
        box.put_many([Entry(CRITICAL, "r1", b"{}", episode=EpisodeState("bad", DRY, 1, 1))])
    assert box.depth(CRITICAL) == 0 and box.open_episodes() == []
    box.close()


# --------------------------------------------------------------------------- the agent


def build_agent(data_dir: Path, box: SourceBox, cloud: FakeCloud, **opts: Any) -> Agent:
    return Agent(
        make_site(SITE, data_dir=data_dir), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, tick_interval=0.05, **opts),
        outputs={}, monitor_factory=fake_monitors, source_factory=box,
        http_client=cloud.client(),
    )


def of_type(cloud: FakeCloud, etype: str) -> list[tuple[str, str]]:
    return sorted((e["state"], e["event_id"]) for e in cloud.received.values()
                  if e["type"] == etype)


def test_a_restart_during_a_fault_raises_it_once(tmp_path: Path) -> None:
    cloud = FakeCloud()
    box = SourceBox()
    agent = build_agent(tmp_path, box, cloud)
    agent.start()
    try:
        box.get.push(PUMP, pump_payload(10.0))
        box.get.push(PUMP, pump_payload(11.0, current_a=15.0))
        wait_until(lambda: len(cloud.received) == 1)
    finally:
        agent.stop()
    box2 = SourceBox()
    again = build_agent(tmp_path, box2, cloud)
    again.start()
    try:
        box2.get.push(PUMP, pump_payload(12.0, current_a=15.0))
        box2.get.push(PUMP, pump_payload(13.0, current_a=15.0))
        box2.get.push(PUMP, pump_payload(14.0))
        wait_until(lambda: len(cloud.received) == 2)
        wait_until(lambda: len(box2.get.acked) == 3)
        assert again.metrics.counter("episodes_reraise_suppressed") == 1
    finally:
        again.stop()
    assert of_type(cloud, DRY) == sorted([
        ("raised", eid(DRY, 11.0, "raised")), ("cleared", eid(DRY, 11.0, "cleared")),
    ])


def snapshot(data_dir: Path, into: Path) -> Path:
    """The data folder as a SIGKILL would leave it: database and WAL as they are on disk,
    no lock holder."""
    into.mkdir()
    for path in data_dir.iterdir():
        if path.name.startswith("outbox.db") or path.name.startswith("deadletters.db"):
            shutil.copy2(path, into / path.name)
    return into


def test_a_crash_image_replays_redelivered_data_into_the_same_episode(tmp_path: Path) -> None:
    """Crash after the raise was committed but before the clear was: the redelivered data
    re-raises (suppressed) then clears with the original start."""
    cloud = FakeCloud(down=True)
    box = SourceBox()
    agent = build_agent(tmp_path / "live", box, cloud)
    agent.start()
    try:
        box.get.push(PUMP, pump_payload(20.0, current_a=15.0))
        wait_until(lambda: agent.outbox.depth(CRITICAL) == 1 and len(box.get.acked) == 1)
        image = snapshot(tmp_path / "live", tmp_path / "crash")
    finally:
        agent.stop()
    cloud.down = False
    box2 = SourceBox()
    again = build_agent(image, box2, cloud)
    again.start()
    try:
        for ts in (21.0, 22.0):  # not acked before the "crash": the broker sends them again
            box2.get.push(PUMP, pump_payload(ts, current_a=15.0))
        box2.get.push(PUMP, pump_payload(23.0))
        wait_until(lambda: len(cloud.received) == 2)
        wait_until(lambda: len(box2.get.acked) == 3)
    finally:
        again.stop()
    assert of_type(cloud, DRY) == sorted([
        ("raised", eid(DRY, 20.0, "raised")), ("cleared", eid(DRY, 20.0, "cleared")),
    ])


def test_an_episode_not_confirmed_after_restart_is_closed(tmp_path: Path) -> None:
    cloud = FakeCloud()
    box = SourceBox()
    agent = build_agent(tmp_path, box, cloud)
    agent.start()
    try:
        box.get.push(PUMP, pump_payload(30.0, accel1_rms=2.0))
        wait_until(lambda: len(cloud.received) == 1)
    finally:
        agent.stop()
    box2 = SourceBox()
    again = build_agent(tmp_path, box2, cloud, episode_confirm_periods=5)
    again.start()
    try:
        for ts in range(100, 106):  # the fault ended while the agent was down
            box2.get.push(PUMP, pump_payload(float(ts)))
        wait_until(lambda: len(cloud.received) == 2)
    finally:
        again.stop()
    wear = [e for e in cloud.received.values() if e["type"] == "pump.bearing_wear"]
    [clear] = [e for e in wear if e["state"] == "cleared"]
    assert clear["event_id"] == eid("pump.bearing_wear", 30.0, "cleared")
    assert clear["evidence"]["reason"] == NOT_CONFIRMED and clear["ts"] == 105.0
    stored = Outbox(tmp_path / "outbox.db")
    assert stored.open_episodes() == []
    stored.close()


# --------------------------------------------------------------------------- SIGKILL


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_sigkill_during_an_ongoing_fault_raises_each_episode_once(
    broker: Any, tmp_path: Path
) -> None:
    """A real ``gatehouse edge`` with the profiles' real detectors, SIGKILLed three times
    while a pump is out of range and a gate's retained status says offline."""
    from tests.servers import free_port
    from tests.servers_edge import HttpFakeCloud, Publisher
    from tests.test_edge_crash import EdgeProcess

    site_id = f"ep{uuid.uuid4().hex[:10]}"
    cloud = HttpFakeCloud()
    site = make_site(
        site_id, data_dir=tmp_path / "edge", mqtt_url=broker.url, cloud_url=cloud.url,
        devices=[DeviceConfig(id="gate-1", kind="access_gate"),
                 DeviceConfig(id="pump-1", kind="water_pump")],
    )
    config = tmp_path / "site.yaml"
    dump_site(site, config)
    edge = EdgeProcess(config, free_port(), tmp_path / "edge.log")
    pub = Publisher(broker.port)
    telemetry = f"gh/{site_id}/water_pump/pump-1/telemetry"
    t0 = round(time.time())  # data time near the edge's clock: its offline ticks agree
    received = cloud.cloud.received
    lock = threading.Lock()

    def state(device: str, etype: str, st: str) -> list[dict[str, Any]]:
        with lock:
            return [e for e in list(received.values())
                    if (e["device_id"], e["type"], e["state"]) == (device, etype, st)]

    def readings(first: int, last: int, fault: bool) -> None:
        for i in range(first, last):
            accel = 1.5 + 0.01 * (i % 7) if fault else 0.2 + 0.01 * (i % 5)
            pub.publish(telemetry, pump_payload(
                t0 + i, accel1_rms=accel, accel2_rms=0.25 + 0.01 * (i % 3),
                current_a=3.0 + 0.05 * (i % 4), pressure_bar=3.0 + 0.02 * (i % 6)))
        pub.flush()

    oor = "pump.sensor_out_of_range"
    try:
        edge.start()
        pub.publish(f"gh/{site_id}/access_gate/gate-1/status", b"offline", retain=True)
        readings(0, 40, fault=False)
        readings(40, 80, fault=True)
        wait_until(lambda: bool(state("pump-1", oor, "raised"))
                   and bool(state("gate-1", "gate.offline", "raised")), timeout=30)
        for first in (80, 120, 160):
            edge.kill()
            readings(first, first + 40, fault=True)  # queued for the edge while it is down
            edge.start()
            time.sleep(0.5)  # let it take part of the backlog before the next kill
        readings(200, 240, fault=False)
        wait_until(lambda: bool(state("pump-1", oor, "cleared")), timeout=30)
        assert edge.terminate() == 0
    finally:
        if edge.proc is not None and edge.proc.poll() is None:
            edge.kill()
        pub.close()
        cloud.close()

    [raise_] = state("pump-1", oor, "raised")
    assert raise_["ts"] == t0 + 40
    [clear] = state("pump-1", oor, "cleared")
    assert clear["event_id"] == make_event_id(site_id, "pump-1", oor, t0 + 40, "cleared")
    assert len(state("gate-1", "gate.offline", "raised")) == 1
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in received.values():
        by_key.setdefault((e["device_id"], e["type"]), []).append(e)
    for key, rows in by_key.items():
        rows.sort(key=lambda r: (r["ts"], r["state"] != "cleared"))
        states = [r["state"] for r in rows]
        assert not any(a == b == "raised" for a, b in itertools.pairwise(states)), (
            f"{key} raised again with no clear between: {states}")
    log_text = (tmp_path / "edge.log").read_text()
    assert "Traceback" not in log_text, log_text[-2000:]
