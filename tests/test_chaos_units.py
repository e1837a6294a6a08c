"""The fault-injection suite's own parts: the plans, the audit's definitions, the metrics
parser, the fake telemetry database and the small disk."""

from __future__ import annotations

import gzip
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from gatehouse.chaos_audit import CloudEvent, CloudOrder, EdgeStores, audit, integrity
from gatehouse.chaos_disk import MountUnavailable, SmallDisk
from gatehouse.chaos_load import FakeTsdb, SentEvent
from gatehouse.chaos_plan import FULL, QUICK
from gatehouse.chaos_run import parse_metrics
from gatehouse.cli import build_parser

NATIVE = ("gate.forced_open", "gate.held_open", "gate.tamper")
CLEAN = EdgeStores(outbox_depth={}, evicted={"telemetry": 0}, cloud_rejected=0)


def sent(*ids: str) -> dict[str, SentEvent]:
    return {i: SentEvent(i, "g1", "gate.forced_open", "critical", float(n))
            for n, i in enumerate(ids)}


def native(event_id: str, ts: float) -> CloudEvent:
    return CloudEvent(event_id, "g1", "gate.forced_open", "raised", ts)


def test_full_plan_keeps_the_issues_promise() -> None:
    steps = FULL.schedule()
    assert FULL.events >= 20_000
    assert steps.count("broker_restart") == 5
    assert steps.count("cloud_outage") == 3 and FULL.cloud_outage_s >= 30
    assert steps.count("edge_kill") == 5
    assert steps.count("cloud_kill") == 2
    assert steps.count("disk_fill") == 1
    assert steps.count("hostile") == 1 and FULL.hostile >= 10_000
    assert steps.index("disk_fill") == len(steps) // 2


def test_quick_plan_has_one_of_each_fault() -> None:
    steps = QUICK.schedule()
    assert sorted(steps) == sorted(
        ["broker_restart", "edge_kill", "cloud_outage", "cloud_kill", "disk_fill", "hostile"])
    assert QUICK.expected_seconds() < FULL.expected_seconds()


def test_faults_are_interleaved_not_grouped() -> None:
    steps = FULL.schedule()
    assert steps[:4] != ["broker_restart"] * 4
    assert len(set(steps[:4])) == 4


def test_with_events_overrides_only_the_count() -> None:
    plan = QUICK.with_events(10)
    assert plan.events == 10 and plan.schedule() == QUICK.schedule()
    assert QUICK.with_events(None) is QUICK


def test_audit_of_a_perfect_run_is_clean() -> None:
    truth = sent("a", "b", "c")
    events = [native("a", 0.0), native("b", 1.0), native("c", 2.0)]
    orders = [CloudOrder(1, "g1", "gate.forced_open", "open")]
    result = audit(truth, events, orders, CLEAN, [], NATIVE)
    assert (result.events_sent, result.events_received, result.events_lost) == (3, 3, 0)
    assert result.events_duplicated == 0 and result.work_orders_duplicated == 0


def test_audit_counts_an_event_missing_from_the_cloud_as_lost() -> None:
    result = audit(sent("a", "b"), [native("a", 0.0)], [], CLEAN, [], NATIVE)
    assert result.events_lost == 1 and result.lost_ids == ["b"]


def test_audit_counts_one_episode_stored_under_two_ids() -> None:
    events = [native("a", 0.0), native("a2", 0.0)]
    result = audit(sent("a"), events, [], CLEAN, [], NATIVE)
    assert result.same_episode_stored_twice == 1 and result.events_duplicated == 1


def test_audit_counts_a_detector_episode_raised_twice_without_a_clear() -> None:
    events = [
        CloudEvent("r1", "p1", "pump.dry_running", "raised", 10.0),
        CloudEvent("r2", "p1", "pump.dry_running", "raised", 20.0),
        CloudEvent("c2", "p1", "pump.dry_running", "cleared", 30.0),
        CloudEvent("r3", "p1", "pump.dry_running", "raised", 40.0),
    ]
    result = audit({}, events, [], CLEAN, [], NATIVE)
    assert result.episodes_reraised == 1
    assert "p1 pump.dry_running" in result.reraised_examples[0]
    assert result.detector_events == 4


def test_audit_tells_which_reraises_followed_an_edge_restart() -> None:
    events = [
        CloudEvent("r1", "p1", "pump.dry_running", "raised", 10.0, received_at=100.0),
        CloudEvent("r2", "p1", "pump.dry_running", "raised", 20.0, received_at=205.0),
        CloudEvent("r3", "p1", "pump.dry_running", "raised", 30.0, received_at=400.0),
    ]
    result = audit({}, events, [], CLEAN, [], NATIVE, edge_restarts=[200.0])
    assert result.episodes_reraised == 2
    assert result.reraised_soon_after_edge_restart == 1


def test_audit_counts_two_active_orders_for_one_fault() -> None:
    orders = [CloudOrder(1, "g1", "gate.forced_open", "open"),
              CloudOrder(2, "g1", "gate.forced_open", "assigned")]
    result = audit(sent("a"), [native("a", 0.0)], orders, CLEAN, [], NATIVE)
    assert result.work_orders_duplicated == 1


def test_audit_allows_a_new_order_per_new_episode() -> None:
    events = [
        CloudEvent("r1", "p1", "pump.dry_running", "raised", 10.0),
        CloudEvent("c1", "p1", "pump.dry_running", "cleared", 20.0),
        CloudEvent("r2", "p1", "pump.dry_running", "raised", 30.0),
    ]
    orders = [CloudOrder(1, "p1", "pump.dry_running", "closed"),
              CloudOrder(2, "p1", "pump.dry_running", "open")]
    result = audit({}, events, orders, CLEAN, [], NATIVE)
    assert result.work_orders_duplicated == 0


def test_audit_reports_what_the_edge_still_holds_and_faults_detected() -> None:
    stores = EdgeStores({"events": 3, "telemetry": 9}, {"telemetry": 5}, cloud_rejected=2)
    events = [CloudEvent("r1", "p1", "pump.dry_running", "raised", 10.0)]
    faults = [{"device_id": "p1", "type": "pump.dry_running"},
              {"device_id": "p2", "type": "pump.dry_running"}]
    result = audit({}, events, [], stores, faults, NATIVE)
    assert result.outbox_left == {"events": 3}
    assert result.cloud_rejected == 2
    assert (result.faults_injected, result.faults_detected) == (2, 1)


def test_parse_metrics_reads_labels_and_skips_comments() -> None:
    text = ('# HELP x\n# TYPE x counter\ngatehouse_edge_outbox_evicted_items{lane="telemetry"} 42\n'
            "gatehouse_edge_degraded 0\nnot-a-metric\n")
    values = parse_metrics(text)
    assert values['gatehouse_edge_outbox_evicted_items{lane="telemetry"}'] == 42.0
    assert values["gatehouse_edge_degraded"] == 0.0
    assert len(values) == 2


def test_integrity_of_a_missing_and_a_broken_file(tmp_path: Path) -> None:
    assert integrity(tmp_path / "none.db") == "missing"
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    assert integrity(bad) != "ok"


def test_fake_tsdb_counts_lines_and_refuses_when_down() -> None:
    tsdb = FakeTsdb()
    tsdb.start()
    try:
        body = gzip.compress(b"m,device=a v=1 1\nm,device=b v=2 2\n")
        ok = httpx.post(f"{tsdb.url}/api/v2/write", content=body,
                        headers={"Content-Encoding": "gzip"})
        assert ok.status_code == 204 and tsdb.lines == 2
        tsdb.up = False
        down = httpx.post(f"{tsdb.url}/api/v2/write", content=b"m v=1 1\n")
        assert down.status_code == 503 and tsdb.refused == 1 and tsdb.lines == 2
    finally:
        tsdb.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounting a tmpfs needs root")
def test_small_disk_fills_to_enospc_and_frees(tmp_path: Path) -> None:
    disk = SmallDisk(tmp_path / "disk", size_mb=2)
    try:
        disk.mount()
    except MountUnavailable as exc:
        pytest.skip(str(exc))
    try:
        written = disk.fill()
        assert written > 1024 * 1024
        assert disk.free_bytes() < 4096
        with pytest.raises(OSError), open(disk.path / "more", "wb") as out:
            out.write(b"x" * 65536)
            out.flush()
            os.fsync(out.fileno())
        disk.free()
        assert disk.free_bytes() > 1024 * 1024
    finally:
        disk.unmount()
    assert not disk.mounted


def test_cli_offers_the_quick_run() -> None:
    args = build_parser().parse_args(["chaos", "--quick", "--events", "50", "--keep"])
    assert args.quick and args.events == 50 and args.keep


def test_every_hostile_message_is_refused_by_the_edge_validator() -> None:
    from collections import Counter

    from device_profiles.loader import load_profiles
    from device_profiles.site import DeviceConfig, EstateLayout, SiteConfig
    from edge.validate import Rejection, Validator
    from gatehouse.chaos_hostile import hostile_messages

    site = SiteConfig(site_id="s1", estate=EstateLayout(buildings=1, gates=0),
                      devices=[DeviceConfig(id="g1", kind="access_gate")])
    validator = Validator(site, load_profiles())
    reasons: Counter[str] = Counter()
    messages = hostile_messages("s1", "b1-pump-1", "g1", 2000, seed=3, now=1.8e9)
    for topic, payload in messages:
        result = validator.validate(topic, payload)
        assert isinstance(result, Rejection), (topic, payload[:80], result)
        reasons[result.reason.value] += 1
    assert sum(reasons.values()) == 2000
    assert len(reasons) >= 10
    assert messages == hostile_messages("s1", "b1-pump-1", "g1", 2000, seed=3, now=1.8e9)


def test_the_chaos_broker_keeps_a_queued_message_across_its_restart(tmp_path: Path) -> None:
    """Under a private parent (pytest's own tmp root is 0700) the broker must still save
    its state: a restart that forgot the edge's session lost events in CI."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("needs the mosquitto binary")
    import paho.mqtt.client as mqtt

    from gatehouse.chaos_procs import Broker

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    broker = Broker(private / "broker")
    broker.start()

    got: list[bytes] = []

    def client(cid: str) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
        c.on_message = lambda _c, _u, m: got.append(m.payload)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        return c

    try:
        sub = client("chaos-test-sub")
        sub.subscribe("t/#", qos=1)
        time.sleep(0.5)
        sub.disconnect()
        sub.loop_stop()
        pub = client("chaos-test-pub")
        pub.publish("t/1", b"queued", qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        broker.restart()
        sub = client("chaos-test-sub")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.stop()
    assert got == [b"queued"], broker.errors()
    assert not broker.persistence_failed(), broker.errors()
