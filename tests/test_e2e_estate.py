"""The walking skeleton end to end: simulator -> real Mosquitto -> edge -> cloud -> work order.

One test per promise of the slice: every injected fault kind opens its work order; a resent
batch opens no second order; 1,000 malformed payloads are each rejected with a counted
reason while good telemetry keeps flowing.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from device_profiles.messages import Event, EventBatch, make_event_id, telemetry_topic
from device_profiles.site import DeviceConfig
from simulators.models import FaultSpec
from simulators.publisher import EstatePublisher
from tests.estate_stack import site_stack, wait_until
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

DEVICES = [
    DeviceConfig(id="e-elev-1", kind="elevator", building="B1"),
    # a door fault shows only when the door cycles: at night a car gets a few calls an
    # hour, and the test's 50 simulated minutes could pass without one
    DeviceConfig(id="e-elev-2", kind="elevator", building="B1", params={"busyness": 4.0}),
    # running all the time: at night a pump runs 5-15 minutes in 10-30, and the wear,
    # which shows only while it runs, could miss the test's window (it failed after 22:30)
    DeviceConfig(id="e-pump-1", kind="water_pump", building="B1", floor=-1,
                 params={"duty": "continuous"}),
    DeviceConfig(id="e-meter-1", kind="smart_meter", building="B1", floor=3),
    DeviceConfig(id="e-gate-1", kind="access_gate", building="estate", floor=0),
]

SPEED = 20.0
"""Simulated time runs 20 times faster: bearing wear over an hour shows within a minute."""
FAULTS = [
    # (event type, device, start, end, params): simulated seconds after the start
    ("elevator.entrapment", "e-elev-1", 60.0, 3600.0, {}),
    ("elevator.door_fault", "e-elev-2", 60.0, 7200.0, {"ramp": 300.0}),
    ("pump.bearing_wear", "e-pump-1", 60.0, 14400.0, {"ramp": 3600.0}),
    ("meter.voltage_sag", "e-meter-1", 60.0, 3600.0, {}),
    ("gate.forced_open", "e-gate-1", 60.0, 600.0, {}),
]


def _site_id() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def test_every_injected_fault_kind_opens_its_work_order(broker: Mosquitto, tmp_path: Path) -> None:
    site_id = _site_id()
    with site_stack(tmp_path, broker.url, site_id, DEVICES) as stack:
        start = time.time()
        faults = [
            FaultSpec(device_id=d, type=t, start=start + s, end=start + e, params=p)
            for t, d, s, e, p in FAULTS
        ]
        truth = tmp_path / "truth.jsonl"
        sim = EstatePublisher(
            stack.site, broker.url, seed=3, faults=faults, truth_path=truth, qos=1,
            speed=SPEED, start_ts=start,
        )
        sim.start()
        try:
            wanted = {t for t, *_ in FAULTS}

            seen: set[str] = set()

            def all_open() -> bool:
                seen.update(o["event_type"] for o in stack.orders())
                return wanted <= seen

            try:
                wait_until(all_open, timeout=150, what=f"work orders for {sorted(wanted)}")
            except AssertionError as exc:
                stats = stack.agent.stats()
                raise AssertionError(
                    f"{exc}; missing {sorted(wanted - seen)}, opened {sorted(seen)}; agent: "
                    f"received {stats.get('messages_received')}, rejected "
                    f"{stats.get('messages_rejected')}, events {stats.get('events_raised')}"
                ) from exc
        finally:
            sim.stop()
        orders = {o["event_type"]: o for o in stack.orders()}
        for event_type in wanted:
            order = orders[event_type]
            assert order["state"] == "open"
            assert order["response_due"] > order["opened_at"]
            assert order["resolve_due"] >= order["response_due"]
        entrapment = orders["elevator.entrapment"]
        assert entrapment["priority"] == "P1"
        assert entrapment["response_due"] - entrapment["opened_at"] == pytest.approx(15 * 60)
        recorded = [json.loads(line) for line in truth.read_text().splitlines() if line]
        assert {r["type"] for r in recorded} >= wanted
        device = stack.api.get("/api/v1/devices/e-elev-1")
        device.raise_for_status()
        body = device.json()
        assert any(e["type"] == "elevator.entrapment" for e in body["events"])
        assert any(o["event_type"] == "elevator.entrapment" for o in body["work_orders"])
        assert stack.agent.stats()["messages_rejected"] == 0


def test_a_resent_batch_opens_no_second_work_order(broker: Mosquitto, tmp_path: Path) -> None:
    site_id = _site_id()
    with site_stack(tmp_path, broker.url, site_id, DEVICES[:1]) as stack:
        ts = time.time()
        event = Event(
            event_id=make_event_id(site_id, "e-elev-1", "elevator.door_fault", ts, "raised"),
            site_id=site_id, gateway_id="gw-test", device_id="e-elev-1", kind="elevator",
            type="elevator.door_fault", severity="warning", state="raised", ts=ts,
            evidence={"door_cycle_s": 14.2},
        )
        body = EventBatch(events=[event]).model_dump(mode="json")
        headers = {"Authorization": f"Bearer {stack.token}"}
        with httpx.Client(base_url=stack.base_url, timeout=10) as gw:
            first = gw.post("/api/v1/events", json=body, headers=headers)
            second = gw.post("/api/v1/events", json=body, headers=headers)
            forged = gw.post("/api/v1/events", json=body, headers={"Authorization": "Bearer x"})
        assert first.status_code == 200 and first.json()["accepted"] == [event.event_id]
        assert second.status_code == 200 and second.json()["duplicates"] == [event.event_id]
        assert forged.status_code == 401
        orders = stack.orders(event_type="elevator.door_fault")
        assert len(orders) == 1
        assert orders[0]["event_count"] == 1


def _malformed(site_id: str, i: int) -> tuple[str, bytes]:
    """Ten families of bad input, 100 of each."""
    good_topic = telemetry_topic(site_id, "water_pump", "e-pump-1")
    family = i % 10
    if family == 0:
        return good_topic, b"{not json" + str(i).encode()
    if family == 1:
        return good_topic, json.dumps({"ts": time.time(), "accel1_rms": "high"}).encode()
    if family == 2:
        return telemetry_topic(site_id, "water_pump", f"ghost-{i}"), b'{"ts": 1}'
    if family == 3:
        return good_topic, b'{"ts": 1, "pad": "' + b"x" * 300_000 + b'"}'
    if family == 4:
        return f"gh/{site_id}/water_pump//telemetry", b'{"ts": 1}'
    if family == 5:
        return good_topic, b"[1, 2, 3]"
    if family == 6:
        return good_topic, json.dumps({"accel1_rms": 0.1}).encode()
    if family == 7:
        return good_topic, json.dumps(
            {"ts": time.time(), "accel1_rms": 0.1, "accel2_rms": 0.1, "current_a": 1.0,
             "pressure_bar": 1.0, "voltage_v": 9999.0}
        ).encode()
    if family == 8:
        return telemetry_topic(site_id, "elevator", "e-pump-1"), b'{"ts": 1}'
    return good_topic, b"\xff\xfe\x00garbage"


def test_malformed_payloads_are_counted_and_good_telemetry_flows(
    broker: Mosquitto, tmp_path: Path
) -> None:
    site_id = _site_id()
    with site_stack(tmp_path, broker.url, site_id, DEVICES) as stack:
        sim = EstatePublisher(stack.site, broker.url, seed=5, qos=1)
        sim.start()
        try:
            wait_until(lambda: stack.agent.stats()["readings"] > 20, 30, "good telemetry")
            before = stack.agent.stats()
            bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bad-{site_id}")
            bad.connect("127.0.0.1", broker.port)
            bad.loop_start()
            infos = [bad.publish(*_malformed(site_id, i), qos=1) for i in range(1000)]
            for info in infos:
                info.wait_for_publish(timeout=30)
            bad.loop_stop()
            bad.disconnect()

            def counted() -> bool:
                now = stack.agent.stats()["messages_rejected"]
                return bool(now - before["messages_rejected"] >= 1000)

            wait_until(counted, 60, "1,000 rejections")
            readings_then = stack.agent.stats()["readings"]
            wait_until(
                lambda: stack.agent.stats()["readings"] > readings_then + 20, 30,
                "telemetry still flowing after the malformed burst",
            )
        finally:
            sim.stop()
        stats = stack.agent.stats()
        rejects = stats["rejects"]
        assert stats["messages_rejected"] - before["messages_rejected"] == 1000
        assert sum(rejects.values()) == stats["messages_rejected"]
        for reason in ("bad_json", "wrong_type", "unknown_device", "too_large", "bad_topic"):
            assert rejects.get(reason, 0) >= 100, (reason, rejects)
        assert stats["deadletters"] >= 1000
