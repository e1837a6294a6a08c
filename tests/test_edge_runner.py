"""The agent with a fake message source, fake monitors and a fake cloud: bursts, durable
events before acks, telemetry spool and replay, disk-full handling, health and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, Reading
from edge.mqtt_input import InboundMessage
from edge.outbox import CRITICAL, EVENTS, TELEMETRY
from edge.runner import Agent, AgentOptions
from tests.servers_edge import (
    FakeCloud,
    FakeSource,
    SourceBox,
    fake_monitors,
    make_site,
    pump_payload,
)

PROFILES = load_profiles()
PUMP = "gh/s1/water_pump/pump-1/telemetry"


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


class FlakyOutput:
    def __init__(self) -> None:
        self.up = True
        self.stored: list[Reading] = []
        self.batches: list[int] = []
        self.event_points: list[Event] = []
        self.calls = 0

    def write(self, readings: Sequence[Reading]) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionError("tsdb down")
        self.stored.extend(readings)
        self.batches.append(len(readings))

    def write_events(self, events: Sequence[Event]) -> None:
        self.event_points.extend(events)

    def close(self) -> None:
        pass


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Agent, SourceBox, FakeCloud, FlakyOutput]]:
    box, cloud, output = SourceBox(), FakeCloud(), FlakyOutput()
    agent = Agent(
        make_site("s1", data_dir=tmp_path / "edge"), profiles=PROFILES,
        options=AgentOptions(
            http_port=0, tick_interval=0.05, reserve_bytes=0, low_water_bytes=0,
            telemetry_retry_initial=0.01, telemetry_retry_max=0.02,
        ),
        outputs={"tsdb": output}, monitor_factory=fake_monitors, source_factory=box,
        http_client=cloud.client(),
    )
    agent.start()
    yield agent, box, cloud, output
    agent.stop()


def test_events_reach_the_cloud_and_messages_are_acked(
    parts: tuple[Agent, SourceBox, FakeCloud, FlakyOutput],
) -> None:
    agent, box, cloud, output = parts
    src = box.get
    mids = [src.push(PUMP, pump_payload(100.0 + i)) for i in range(5)]
    mids.append(src.push(PUMP, pump_payload(105.0, current_a=15.0)))
    mids.append(src.push(PUMP, pump_payload(106.0, current_a=3.0)))
    wait_until(lambda: len(cloud.received) == 2)
    types = sorted((e["type"], e["state"], e["severity"]) for e in cloud.received.values())
    assert types == [
        ("pump.dry_running", "cleared", "critical"), ("pump.dry_running", "raised", "critical")
    ]
    wait_until(lambda: sorted(src.acked) == mids)
    assert len(output.stored) == 7
    assert sorted((e.type, e.state) for e in output.event_points) == [
        ("pump.dry_running", "cleared"), ("pump.dry_running", "raised")
    ]
    stats = agent.stats()
    assert stats["readings"] == 7 and stats["events"] == 2 and stats["rejected"] == 0


def test_rejections_are_counted_and_kept(
    parts: tuple[Agent, SourceBox, FakeCloud, FlakyOutput],
) -> None:
    agent, box, _, _ = parts
    src = box.get
    src.push(PUMP, b"{oops")
    src.push("gh/s1/water_pump/nobody/telemetry", pump_payload(1.0))
    src.push(PUMP, pump_payload(1.0, current_a=500))
    src.push(PUMP, pump_payload(2.0))
    wait_until(lambda: agent.stats()["received"] == 4)
    stats = agent.stats()
    assert stats["rejects"] == {"bad_json": 1, "unknown_device": 1, "out_of_valid_range": 1}
    wait_until(lambda: agent.stats()["deadletters"] == 3)
    assert stats["readings"] == 1


def test_telemetry_is_spooled_while_the_output_is_down_then_replayed(
    parts: tuple[Agent, SourceBox, FakeCloud, FlakyOutput],
) -> None:
    agent, box, _, output = parts
    src = box.get
    output.up = False
    for i in range(10):
        src.push(PUMP, pump_payload(200.0 + i))
    wait_until(lambda: agent.stats()["telemetry_spooled"] == 10)
    assert agent.outbox.depth(TELEMETRY) >= 1
    output.up = True
    wait_until(lambda: agent.outbox.depth(TELEMETRY) == 0)
    assert output.batches == [10], "spooled bursts are replayed merged, in one write"
    src.push(PUMP, pump_payload(300.0))
    wait_until(lambda: len(output.stored) == 11)
    assert [r.ts for r in output.stored] == sorted(r.ts for r in output.stored)


def test_emit_event_is_durable_and_forwarded(
    parts: tuple[Agent, SourceBox, FakeCloud, FlakyOutput],
) -> None:
    agent, _, cloud, _ = parts
    ev = Event(
        event_id="cam-thrown-000001", site_id="s1", gateway_id="gw-test", device_id="pump-1",
        kind="camera", type="camera.object_thrown", severity="critical", state="raised", ts=5.0,
    )
    assert agent.emit_event(ev) is True
    wait_until(lambda: "cam-thrown-000001" in cloud.received)


def test_health_and_metrics_endpoints(
    parts: tuple[Agent, SourceBox, FakeCloud, FlakyOutput],
) -> None:
    agent, box, _, _ = parts
    box.get.push(PUMP, b"[]")
    wait_until(lambda: agent.stats()["deadletters"] == 1)
    base = f"http://127.0.0.1:{agent.http_port}"
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    text = httpx.get(f"{base}/metrics").text
    assert 'gatehouse_edge_rejects_total{reason="not_an_object"} 1' in text
    for name in ("outbox_depth{lane=\"critical\"}", "outbox_oldest_age_seconds",
                 "outbox_evicted_items", "ingest_rate", "detector_seconds_total"):
        assert f"gatehouse_edge_{name}" in text
    assert "gw-token" not in text and "gw-token" not in health.text
    letters = httpx.get(f"{base}/deadletters", params={"limit": 5}).json()
    assert letters["kept_by_reason"] == {"not_an_object": 1}
    assert letters["letters"][0]["topic"] == PUMP and letters["letters"][0]["payload"] == "[]"
    assert httpx.get(f"{base}/deadletters", params={"limit": "x"}).status_code == 400
    assert httpx.get(f"{base}/nothing").status_code == 404


def test_cloud_outage_holds_events_until_it_returns(tmp_path: Path) -> None:
    box, cloud = SourceBox(), FakeCloud(down=True)
    agent = Agent(
        make_site("s1", data_dir=tmp_path), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, tick_interval=0.05),
        outputs={}, monitor_factory=fake_monitors, source_factory=box, http_client=cloud.client(),
    )
    agent.start()
    try:
        for i in range(21):
            box.get.push(PUMP, pump_payload(10.0 + i, accel1_rms=2.0 if i % 2 else 0.2))
        wait_until(lambda: agent.stats()["events"] == 20)
        wait_until(lambda: agent.health()["status"] == "degraded")
        assert "cloud_unreachable" in agent.health()["reasons"]
        assert agent.outbox.depth(EVENTS) == 20
        cloud.down = False
        wait_until(lambda: len(cloud.received) == 20)
        wait_until(lambda: agent.health()["status"] == "ok")
    finally:
        agent.stop()


class FillableDisk:
    """A free-space probe the test controls."""

    def __init__(self) -> None:
        self.free = 10**9

    def __call__(self, path: Path) -> int:
        return self.free


def test_restart_resumes_the_outbox(tmp_path: Path) -> None:
    cloud = FakeCloud(down=True)
    opts = AgentOptions(reserve_bytes=0, low_water_bytes=0, tick_interval=0.05)
    box = SourceBox()
    site = make_site("s1", data_dir=tmp_path)
    agent = Agent(site, profiles=PROFILES, options=opts, outputs={},
                  monitor_factory=fake_monitors, source_factory=box, http_client=cloud.client())
    agent.start()
    box.get.push(PUMP, pump_payload(1.0, current_a=15.0))
    wait_until(lambda: agent.outbox.depth(CRITICAL) == 1)
    agent.stop()
    cloud.down = False
    again = Agent(site, profiles=PROFILES, options=opts, outputs={},
                  monitor_factory=fake_monitors, source_factory=SourceBox(),
                  http_client=cloud.client())
    again.start()
    try:
        wait_until(lambda: len(cloud.received) == 1)
        assert next(iter(cloud.received.values()))["type"] == "pump.dry_running"
    finally:
        again.stop()


def test_disk_low_reports_degraded_and_recovers(tmp_path: Path) -> None:
    disk = FillableDisk()
    box, cloud = SourceBox(), FakeCloud()
    agent = Agent(
        make_site("s1", data_dir=tmp_path), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=1024, low_water_bytes=10_000, tick_interval=0.05),
        outputs={"tsdb": FlakyOutput()}, monitor_factory=fake_monitors, source_factory=box,
        http_client=cloud.client(), free_bytes=disk,
    )
    agent.start()
    try:
        wait_until(lambda: agent.health()["status"] == "ok")
        disk.free = 5_000
        wait_until(lambda: "disk_low" in agent.health()["reasons"])
        disk.free = 10**9
        wait_until(lambda: agent.health()["status"] == "ok")
    finally:
        agent.stop()


def test_emit_event_is_idempotent(tmp_path: Path) -> None:
    agent = Agent(
        make_site("s1", data_dir=tmp_path), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, forward=False),
        outputs={}, monitor_factory=fake_monitors, source_factory=SourceBox(),
    )
    ev = Event(
        event_id="e-00000001", site_id="s1", gateway_id="gw-test", device_id="pump-1",
        kind="water_pump", type="pump.leak", severity="warning", state="raised", ts=1.0,
    )
    assert agent.emit_event(ev) is True
    assert agent.emit_event(ev) is False
    assert agent.outbox.depth(EVENTS) == 1
    agent.stop()


def test_the_site_tsdb_output_is_built_and_spooled_when_unreachable(tmp_path: Path) -> None:
    from device_profiles.site import TsdbConfig
    from edge.outputs import build_outputs

    site = make_site("s1", data_dir=tmp_path).model_copy(
        update={"tsdb": TsdbConfig(url="http://127.0.0.1:9")}
    )
    assert "influxdb" in build_outputs(site, PROFILES)
    box = SourceBox()
    agent = Agent(
        site, profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, forward=False),
        outputs={"influxdb": build_outputs(site, PROFILES)["influxdb"]},
        monitor_factory=fake_monitors, source_factory=box,
    )
    agent.start()
    try:
        for i in range(5):
            box.get.push(PUMP, pump_payload(100.0 + i))
        wait_until(lambda: agent.stats()["telemetry_spooled"] == 5, timeout=30)
        assert agent.metrics.counter("output_failures", output="influxdb") >= 1
        wait_until(lambda: len(box.get.acked) == 5)
    finally:
        agent.stop()


def test_ingest_rate_counts_every_message_of_the_window(
    parts: tuple[Agent, SourceBox, FakeCloud, FlakyOutput],
) -> None:
    agent, box, _, _ = parts
    for i in range(300):
        box.get.push(PUMP, pump_payload(500.0 + i))
    wait_until(lambda: agent.stats()["received"] == 300)
    line = next(x for x in agent.metrics.render().splitlines()
                if x.startswith("gatehouse_edge_ingest_rate "))
    assert float(line.split()[1]) == pytest.approx(30.0)


class CheckingSource(FakeSource):
    """Records, at each ack, how many critical events the outbox holds."""

    outbox_probe: Callable[[], int] = staticmethod(lambda: -1)

    def __init__(self, sink: Callable[[InboundMessage], None]) -> None:
        super().__init__(sink)
        self.depth_at_ack: dict[int, int] = {}

    def ack(self, message: InboundMessage) -> bool:
        self.depth_at_ack[message.mid] = self.outbox_probe()
        return super().ack(message)


def test_a_message_is_acked_only_after_its_event_is_durable(tmp_path: Path) -> None:
    holder: list[CheckingSource] = []

    def factory(sink: Callable[[InboundMessage], None]) -> CheckingSource:
        holder.append(CheckingSource(sink))
        return holder[0]

    agent = Agent(
        make_site("s1", data_dir=tmp_path), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, forward=False),
        outputs={}, monitor_factory=fake_monitors, source_factory=factory,
    )
    src = holder[0]
    src.outbox_probe = lambda: agent.outbox.depth(CRITICAL)
    agent.start()
    try:
        quiet = src.push(PUMP, pump_payload(1.0))
        alarm = src.push(PUMP, pump_payload(2.0, current_a=15.0))
        wait_until(lambda: alarm in src.depth_at_ack)
        assert src.depth_at_ack[alarm] == 1
        assert quiet in src.depth_at_ack
    finally:
        agent.stop()


def test_cli_check_and_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from device_profiles.site import dump_site
    from gatehouse.cli import main

    good = tmp_path / "site.yaml"
    dump_site(make_site("s1", data_dir=tmp_path), good)
    assert main(["edge", "--config", str(good), "--check"]) == 0
    assert "ok: site s1" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("site_id: s1\nmqtt: {url: 5, bogus: 1}\n")
    assert main(["edge", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.bogus" in err and "--check" in err
    assert main(["edge", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_start_and_stop_without_a_broker(tmp_path: Path) -> None:
    """The real MQTT input keeps retrying an absent broker, reports it, and stops (a hang
    would trip the test timeout)."""
    agent = Agent(
        make_site("s1", data_dir=tmp_path, mqtt_url="mqtt://127.0.0.1:9"), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, forward=False),
        outputs={}, monitor_factory=fake_monitors,
    )
    agent.start()
    health = agent.health()
    assert health["status"] == "degraded" and "mqtt_disconnected" in health["reasons"]
    agent.stop()
    assert agent.stats()["mqtt_connected"] is False


def test_one_agent_per_data_folder(tmp_path: Path) -> None:
    from edge.sqlite_store import StoreError

    def build() -> Agent:
        return Agent(
            make_site("s1", data_dir=tmp_path), profiles=PROFILES,
            options=AgentOptions(reserve_bytes=0, low_water_bytes=0, forward=False),
            outputs={}, monitor_factory=fake_monitors, source_factory=SourceBox(),
        )

    first = build()
    with pytest.raises(StoreError, match="another gatehouse edge"):
        build()
    first.stop()
    build().stop()


def test_the_agent_returns_free_memory_and_reports_its_model_fits(tmp_path: Path) -> None:
    """The tick asks the C allocator to give free pages back every
    ``release_memory_every`` seconds; the fit budget's gauges are on /metrics."""
    agent = Agent(
        make_site("s1", data_dir=tmp_path, mqtt_url="mqtt://127.0.0.1:9"), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, forward=False,
                             tick_interval=0.02, release_memory_every=0.05, http_port=0),
        outputs={}, monitor_factory=fake_monitors,
    )
    agent.start()
    try:
        wait_until(lambda: agent.metrics.counter("allocator_release_seconds") > 0)
        text = httpx.get(f"http://127.0.0.1:{agent.http_port}/metrics").text
        for name in ("model_fits 0", "model_fits_waiting 0", "model_fit_seconds 0",
                     "allocator_release_seconds_total"):
            assert f"gatehouse_edge_{name}" in text, name
    finally:
        agent.stop()
    with pytest.raises(ValueError, match="release_memory_every"):
        AgentOptions(release_memory_every=0)
    with pytest.raises(ValueError, match="fit_share"):
        AgentOptions(fit_share=1.5)
