"""The estate publisher and the replay command against a real Mosquitto."""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device_profiles.loader import load_profiles
from device_profiles.site import EstateLayout, SiteConfig
from simulators.commands import configure, run
from simulators.models import FaultSpec
from simulators.publisher import EstatePublisher, inject_topic
from simulators.truth import read_truth
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


class Collector:
    """A subscriber that keeps every message (topic, payload, retained flag)."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def wait_for(
        self, cond: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 20.0
    ) -> list[tuple[str, bytes, bool]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snap = self.snapshot()
            if cond(snap):
                return snap
            time.sleep(0.05)
        raise AssertionError(f"condition not met; got {len(self.snapshot())} messages")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def collector(broker: Mosquitto, topic: str) -> Iterator[Collector]:
    c = Collector(broker, topic)
    try:
        yield c
    finally:
        c.close()


def test_estate_publishes_contract_topics_status_events_and_truth(
    broker: Mosquitto, tmp_path: Path
) -> None:
    site_id = f"sim-{uuid.uuid4().hex[:8]}"
    site = SiteConfig(
        site_id=site_id,
        estate=EstateLayout(buildings=1, floors=6, meters_per_building=2, gates=1),
    )
    devices = {d.id: d for d in site.all_devices()}
    profiles = load_profiles()
    truth_path = tmp_path / "truth.jsonl"
    now = time.time()
    with collector(broker, f"gh/{site_id}/#") as sub:
        pub = EstatePublisher(
            site,
            broker.url,
            seed=3,
            speed=30.0,
            start_ts=now,
            truth_path=truth_path,
            faults=[FaultSpec("gate-1", "gate.forced_open", now + 30, now + 60)],
        )
        pub.start()
        try:
            sub.client.publish(
                inject_topic(site_id),
                json.dumps({"device_id": "b1-pump-1", "type": "pump.dry_running", "duration": 120}),
                qos=1,
            )
            sub.client.publish(inject_topic(site_id), b"{not json", qos=1)
            seen = sub.wait_for(
                lambda msgs: (
                    {t.split("/")[3] for t, _, _ in msgs if t.endswith("/telemetry")}
                    == set(devices)
                    and any(t.endswith("/event") for t, _, _ in msgs)
                    and pub.stats()["injections_rejected"] == 1
                    and pub.stats()["faults_injected"] == 2
                )
            )
        finally:
            pub.stop()
    stats = pub.stats()
    assert stats["errors"] == 0 and stats["publish_failed"] == 0
    assert stats["telemetry_published"] > 50

    last_ts: dict[str, float] = defaultdict(float)
    for topic, payload, _ in seen:
        parts = topic.split("/")
        if parts[2] == "_sim":
            continue
        assert parts[0] == "gh" and parts[1] == site_id and len(parts) == 5
        device = devices[parts[3]]
        assert parts[2] == device.kind
        if parts[4] == "telemetry":
            body = json.loads(payload)
            assert b" " not in payload
            profile = profiles[device.kind]
            assert set(profile.required) <= set(body)
            assert set(body) - {"ts"} <= set(profile.fields)
            assert now - 1 <= body["ts"] <= now + 3600
            assert body["ts"] > last_ts[device.id]
            last_ts[device.id] = body["ts"]
        elif parts[4] == "event":
            body = json.loads(payload)
            assert device.id == "gate-1" and body["type"] == "forced_open"
            assert body["ts"] == pytest.approx(now + 30, abs=0.01)
        else:
            assert payload in (b"online", b"offline")

    records = read_truth(truth_path)
    assert {(r.device_id, r.type) for r in records} == {
        ("gate-1", "gate.forced_open"),
        ("b1-pump-1", "pump.dry_running"),
    }
    dry = next(r for r in records if r.type == "pump.dry_running")
    assert dry.end - dry.start == 120 and dry.kind == "water_pump"

    # After a clean stop every device's retained status is offline.
    with collector(broker, f"gh/{site_id}/+/+/status") as late:
        retained = late.wait_for(lambda msgs: len(msgs) == len(devices))
    assert all(r and p == b"offline" for _, p, r in retained)


def test_offline_fault_publishes_offline_then_online(broker: Mosquitto) -> None:
    site_id = f"sim-{uuid.uuid4().hex[:8]}"
    site = SiteConfig(
        site_id=site_id,
        estate=EstateLayout(
            buildings=1,
            elevators_per_building=0,
            pumps_per_building=0,
            meters_per_building=0,
            gates=1,
            cameras_per_building=0,
        ),
    )
    now = time.time()
    with collector(broker, f"gh/{site_id}/access_gate/gate-1/status") as sub:
        pub = EstatePublisher(
            site,
            broker.url,
            speed=20.0,
            start_ts=now,
            faults=[FaultSpec("gate-1", "gate.offline", now + 20, now + 60)],
        )
        pub.start()
        try:
            states = sub.wait_for(
                lambda m: [p for _, p, _ in m][:3] == [b"online", b"offline", b"online"]
            )
        finally:
            pub.stop()
    assert [p for _, p, _ in states][:3] == [b"online", b"offline", b"online"]


def test_estate_command_runs_for_its_duration(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site_id = f"sim-{uuid.uuid4().hex[:8]}"
    truth = tmp_path / "t.jsonl"
    p = argparse.ArgumentParser()
    configure(p)
    args = p.parse_args(
        [
            "estate",
            "--broker",
            broker.url,
            "--site-id",
            site_id,
            "--buildings",
            "1",
            "--duration",
            "1.5",
            "--speed",
            "10",
            "--random-faults",
            "3",
            "--truth",
            str(truth),
            "--fault",
            "elevator.entrapment@b1-elev-1:start=5,duration=2m",
            "--stats-every",
            "0",
        ]
    )
    with collector(broker, f"gh/{site_id}/+/+/telemetry") as sub:
        assert run(args) == 0
        sub.wait_for(lambda m: len(m) > 20)
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["telemetry_published"] > 20 and stats["faults_injected"] == 4
    records = read_truth(truth)
    assert len(records) == 4
    trapped = next(
        r for r in records if r.device_id == "b1-elev-1" and r.type == "elevator.entrapment"
    )
    assert trapped.end - trapped.start == 120


def test_replay_command_publishes_skab_rows(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tmp_path / "rec.csv"
    rows = [
        f"2020-03-09 10:14:{i:02d};0.0265;0.0401;1.33;0.0547;79.3;26.0;233.0;32.0;"
        f"{1.0 if 10 <= i < 15 else 0.0};0.0"
        for i in range(20)
    ]
    csv_path.write_text(
        "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;"
        "Thermocouple;Voltage;Volume Flow RateRMS;anomaly;changepoint\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    site_id = f"sim-{uuid.uuid4().hex[:8]}"
    p = argparse.ArgumentParser()
    configure(p)
    args = p.parse_args(
        [
            "replay",
            str(csv_path),
            "--device",
            "skab-1",
            "--site-id",
            site_id,
            "--broker",
            broker.url,
            "--speed",
            "100",
            "--truth",
            str(tmp_path / "t.jsonl"),
        ]
    )
    with collector(broker, f"gh/{site_id}/water_pump/skab-1/telemetry") as sub:
        assert run(args) == 0
        msgs = sub.wait_for(lambda m: len(m) == 20)
    bodies = [json.loads(pl) for _, pl, _ in msgs]
    assert bodies[0]["accel1_rms"] == 0.0265 and bodies[0]["flow_lpm"] == 32.0
    assert [round(b["ts"] - bodies[0]["ts"], 3) for b in bodies] == [float(i) for i in range(20)]
    (rec,) = read_truth(tmp_path / "t.jsonl")
    assert rec.type == "pump.anomaly"
    assert rec.start == pytest.approx(bodies[10]["ts"], abs=0.01)
    assert rec.end == pytest.approx(bodies[15]["ts"], abs=0.01)


def test_publisher_reconnects_after_a_broker_restart(broker: Mosquitto) -> None:
    site_id = f"sim-{uuid.uuid4().hex[:8]}"
    site = SiteConfig(
        site_id=site_id,
        estate=EstateLayout(
            buildings=1,
            elevators_per_building=0,
            pumps_per_building=1,
            meters_per_building=0,
            gates=0,
            cameras_per_building=0,
        ),
    )
    pub = EstatePublisher(site, broker.url, speed=5.0)
    pub.start()
    try:
        with collector(broker, f"gh/{site_id}/+/+/telemetry") as before:
            before.wait_for(lambda m: len(m) >= 3)
        broker.restart()
        with collector(broker, f"gh/{site_id}/#") as after:
            msgs = after.wait_for(
                lambda m: (
                    sum(t.endswith("/telemetry") for t, _, _ in m) >= 3
                    and any(t.endswith("/status") and p == b"online" for t, p, _ in m)
                ),
                timeout=30,
            )
        during = pub.stats()
    finally:
        pub.stop()
    assert any(t.endswith("/status") and p == b"online" for t, p, _ in msgs)
    assert during["status_published"] == 2  # online at the first connection and again after
    assert during["errors"] == 0


def test_rate_limit_caps_the_samples_published(broker: Mosquitto) -> None:
    site = SiteConfig(site_id=f"sim-{uuid.uuid4().hex[:8]}", estate=EstateLayout(buildings=2))
    pub = EstatePublisher(site, broker.url, speed=100.0, rate_limit=50.0, duration=1.5)
    pub.start()
    assert pub.wait(30)
    pub.stop()
    stats = pub.stats()
    assert stats["samples"] > 0
    assert stats["samples"] <= 50.0 * stats["elapsed_s"] + 10
