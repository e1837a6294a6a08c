"""The whole telemetry path on real servers: MQTT -> edge agent -> writer -> VictoriaMetrics.

Devices publish to a real Mosquitto; the agent validates the readings and hands them to the
TSDB writer; the database is stopped mid-stream, the agent spools into its outbox's telemetry
lane, and once the database is back it catches up: every reading arrives exactly once, with
its value and timestamp.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from device_profiles.site import DeviceConfig, TsdbConfig
from edge.outputs.tsdb import InfluxTelemetryWriter
from edge.runner import Agent, AgentOptions
from tests.servers import Mosquitto
from tests.servers_edge import FakeCloud, Publisher, fake_monitors, make_site
from tests.servers_tsdb import VictoriaMetrics

pytestmark = pytest.mark.integration
PROFILES = load_profiles()


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s: {what}")


def test_readings_published_while_the_database_is_down_arrive_once_it_is_back(
    broker: Mosquitto, tmp_path: Path
) -> None:
    vm = VictoriaMetrics(workdir=tmp_path / "vm")
    vm.start()
    site_id = f"te{uuid.uuid4().hex[:10]}"
    site = make_site(
        site_id,
        data_dir=tmp_path / "edge",
        mqtt_url=broker.url,
        devices=[DeviceConfig(id="pump-1", kind="water_pump", building="B7", floor=-1)],
    )
    writer = InfluxTelemetryWriter(TsdbConfig(url=vm.url), site, PROFILES, retries=0)
    options = AgentOptions(
        reserve_bytes=0,
        low_water_bytes=0,
        telemetry_retry_initial=0.05,
        telemetry_retry_max=0.2,
    )
    agent = Agent(
        site,
        profiles=PROFILES,
        options=options,
        outputs={"influxdb": writer},
        monitor_factory=fake_monitors,
        http_client=FakeCloud().client(),
    )
    agent.start()
    pub = Publisher(broker.port)
    topic = f"gh/{site_id}/water_pump/pump-1/telemetry"
    t0 = float(int(time.time()) - 1200)

    def publish(indexes: range) -> None:
        for i in indexes:
            payload = {
                "ts": t0 + i,
                "accel1_rms": 0.2,
                "accel2_rms": 0.25,
                "current_a": round(2.0 + i / 100, 2),
                "pressure_bar": 3.0,
            }
            pub.publish(topic, json.dumps(payload).encode())
        pub.flush()

    try:
        wait_until(lambda: bool(agent.stats()["mqtt_connected"]), "agent connected")
        publish(range(0, 100))
        wait_until(lambda: agent.stats()["readings"] == 100, "first 100 readings")
        vm.stop()
        publish(range(100, 250))
        wait_until(lambda: agent.stats()["readings"] == 250, "all 250 readings")
        # Readings are counted when taken in; the writer thread spools them a moment later.
        wait_until(lambda: agent.stats()["telemetry_spooled"] > 0, "telemetry spooled while down")
        vm.start()
        publish(range(250, 300))
        (series,) = vm.wait_for(
            f'water_pump_current_a{{site="{site_id}"}}',
            lambda s: bool(s) and len(s[0]["values"]) >= 300,
            timeout=60,
        )
        assert series["metric"] == {
            "__name__": "water_pump_current_a",
            "site": site_id,
            "building": "B7",
            "device": "pump-1",
            "floor": "-1",
        }
        assert series["timestamps"] == [int((t0 + i) * 1000) for i in range(300)]
        assert series["values"] == [round(2.0 + i / 100, 2) for i in range(300)]
        assert agent.stats()["telemetry_dropped"] == 0
        assert writer.stats()["write_failures"] >= 1
    finally:
        pub.close()
        agent.stop()
        vm.stop()
