"""The agent against a real Mosquitto: malformed traffic is refused and counted while good
telemetry flows, and the persistent session delivers what was published while it was down."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from edge.runner import Agent, AgentOptions
from tests.servers import Mosquitto
from tests.servers_edge import FakeCloud, Publisher, fake_monitors, make_site, pump_payload

pytestmark = pytest.mark.integration
PROFILES = load_profiles()
OPTS = AgentOptions(reserve_bytes=0, low_water_bytes=0)


def wait_until(
    cond: Callable[[], bool], timeout: float = 30.0, state: Callable[[], object] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not reached in time; state: {state()}")


def unique_site() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_a_thousand_malformed_payloads_are_refused_while_good_telemetry_flows(
    broker: Mosquitto, tmp_path: Path
) -> None:
    site_id = unique_site()
    site = make_site(site_id, data_dir=tmp_path, mqtt_url=broker.url)
    cloud = FakeCloud()
    agent = Agent(site, profiles=PROFILES, options=OPTS, outputs={},
                  http_client=cloud.client())
    agent.start()
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: agent.stats()["mqtt_connected"])
        base = f"gh/{site_id}/water_pump/pump-1/telemetry"
        malformed: list[tuple[str, bytes, str]] = [
            (base, b'{"ts": 1, "accel1_rms": ', "bad_json"),
            (base, pump_payload(5.0, current_a="high"), "wrong_type"),  # type: ignore[arg-type]
            (f"gh/{site_id}/water_pump/pump-77/telemetry", pump_payload(5.0), "unknown_device"),
            (base, b'{"ts": 1, "pad": "' + b"x" * 70_000 + b'"}', "too_large"),
            (f"gh/{site_id}//pump-1/telemetry", pump_payload(5.0), "bad_topic"),
        ]
        t0 = time.time() - 1000
        expected: dict[str, int] = {}
        good = 0
        for i in range(1000):
            topic, payload, reason = malformed[i % len(malformed)]
            pub.publish(topic, payload)
            expected[reason] = expected.get(reason, 0) + 1
            if i % 4 == 0:
                pub.publish(base, pump_payload(t0 + good))
                good += 1
        pub.flush()
        wait_until(lambda: agent.stats()["received"] == 1000 + good, state=agent.stats)
        stats = agent.stats()
        assert stats["rejects"] == expected
        assert stats["rejected"] == 1000
        assert stats["readings"] == good == 250
        wait_until(lambda: agent.stats()["acked"] == 1250, state=agent.stats)
        assert agent.metrics.counters_by("detector_errors", "detector") == {}
        letters = agent.deadletters.by_reason()
        assert sum(letters.values()) == 1000
    finally:
        pub.close()
        agent.stop()


def test_messages_published_while_the_agent_is_down_are_delivered(
    broker: Mosquitto, tmp_path: Path
) -> None:
    site_id = unique_site()
    site = make_site(site_id, data_dir=tmp_path, mqtt_url=broker.url)
    cloud = FakeCloud()

    def agent() -> Agent:
        return Agent(site, profiles=PROFILES, options=OPTS, outputs={},
                     monitor_factory=fake_monitors, http_client=cloud.client())

    first = agent()
    first.start()
    wait_until(lambda: first.stats()["mqtt_connected"])
    first.stop()

    pub = Publisher(broker.port)
    t0 = time.time() - 500
    for i in range(100):
        pub.publish(f"gh/{site_id}/water_pump/pump-1/telemetry",
                    pump_payload(t0 + i, current_a=15.0 if i == 50 else 3.0))
    forced = json.dumps({"ts": t0 + 7, "type": "forced_open"}).encode()
    pub.publish(f"gh/{site_id}/access_gate/gate-1/event", forced)
    pub.close()

    second = agent()
    second.start()
    try:
        wait_until(lambda: second.stats()["readings"] == 100)
        wait_until(lambda: len(cloud.received) == 3)
        types = sorted(e["type"] for e in cloud.received.values())
        assert types == ["gate.forced_open", "pump.dry_running", "pump.dry_running"]
        wait_until(lambda: second.stats()["acked"] == 101)
    finally:
        second.stop()


def test_real_detectors_raise_events_that_reach_the_cloud(
    broker: Mosquitto, tmp_path: Path
) -> None:
    site_id = unique_site()
    site = make_site(site_id, data_dir=tmp_path, mqtt_url=broker.url)
    cloud = FakeCloud()
    agent = Agent(site, profiles=PROFILES, options=OPTS, outputs={},
                  http_client=cloud.client())
    agent.start()
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: agent.stats()["mqtt_connected"])
        t0 = time.time() - 20
        for i in range(10):
            current = 3.0 if i < 8 else 6.0
            pub.publish(f"gh/{site_id}/water_pump/pump-1/telemetry",
                        pump_payload(t0 + i, current_a=current))
        pub.publish(f"gh/{site_id}/elevator/elev-1/status",
                    json.dumps({"status": "offline", "ts": t0 + 5}).encode())
        pub.flush()

        def raised() -> set[str]:
            return {e["type"] for e in cloud.received.values() if e["state"] == "raised"}

        wait_until(lambda: {"pump.sensor_out_of_range", "elevator.offline"} <= raised())
        event = next(e for e in cloud.received.values()
                     if e["type"] == "pump.sensor_out_of_range")
        assert event["severity"] == "warning" and event["device_id"] == "pump-1"
        assert event["ts"] == pytest.approx(t0 + 8)
        assert agent.metrics.counters_by("detector_errors", "detector") == {}
    finally:
        pub.close()
        agent.stop()


def test_broker_restarts_lose_nothing(tmp_path: Path) -> None:
    """Queued messages of the agent's session survive a broker restart, and the agent
    reconnects and resubscribes by itself after one."""
    import os

    # as root, Mosquitto drops to its own user and cannot persist into a private folder
    private = Mosquitto(
        workdir=tmp_path / "broker", extra_conf="user root\n" if os.geteuid() == 0 else ""
    )
    private.start()
    site_id = unique_site()
    site = make_site(site_id, data_dir=tmp_path / "edge", mqtt_url=private.url)
    cloud = FakeCloud()

    def agent() -> Agent:
        return Agent(site, profiles=PROFILES, options=OPTS, outputs={},
                     monitor_factory=fake_monitors, http_client=cloud.client())

    def forced(i: int) -> bytes:
        return json.dumps({"ts": 1_700_000_000 + i, "type": "forced_open"}).encode()

    topic = f"gh/{site_id}/access_gate/gate-1/event"
    first = agent()
    first.start()
    try:
        wait_until(lambda: first.stats()["mqtt_connected"])
    finally:
        first.stop()
    pub = Publisher(private.port)
    for i in range(100):
        pub.publish(topic, forced(i))
    pub.close()
    private.restart()
    second = agent()
    second.start()
    try:
        wait_until(lambda: len(cloud.received) == 100)
        private.restart()
        wait_until(lambda: second.metrics.counter("mqtt_connects") >= 2)
        pub = Publisher(private.port)
        for i in range(100, 200):
            pub.publish(topic, forced(i))
        pub.close()
        wait_until(lambda: len(cloud.received) == 200)
        assert second.stats()["rejected"] == 0
    finally:
        second.stop()
        private.stop()
