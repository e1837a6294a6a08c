"""The short fault-injection run (``gatehouse chaos --quick``) against real processes.

One run (module fixture) of a real Mosquitto, ``gatehouse cloud serve``, ``gatehouse edge``
on a tmpfs of its own, and ``gatehouse simulate estate``, with one broker restart, one
cloud outage, one SIGKILL of the edge and of the cloud, one full disk and 1,000 hostile
messages, under a
device-native event load with a known ground truth. Each test checks one promise of the
report, so a broken promise names itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gatehouse.chaos_plan import QUICK
from gatehouse.chaos_run import run_chaos

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("the chaos suite needs the mosquitto binary")
    workdir = tmp_path_factory.mktemp("chaos")
    result = run_chaos(QUICK, workdir, progress=False)
    print(json.dumps({k: v for k, v in result.items() if k != "plan_parameters"}, indent=1))
    return result


def test_every_fault_of_the_plan_was_injected(report: dict[str, Any]) -> None:
    faults = report["faults"]
    assert faults["broker_restarts"] == 1
    assert faults["edge_kills"] == 1
    assert faults["cloud_kills"] == 1
    assert len(faults["cloud_outages_s"]) == 1
    assert faults["cloud_outages_s"][0] >= QUICK.cloud_outage_s


def test_no_event_lost(report: dict[str, Any]) -> None:
    assert report["events_sent"] == QUICK.events
    assert report["delivery"]["events_sent_critical"] > 0
    assert report["events_lost"] == 0, report["delivery"]["lost_ids"]
    assert report["events_received"] == report["events_sent"]
    assert not any(report["delivery"]["outbox_left"].values())
    assert report["delivery"]["cloud_rejected"] == 0


def test_no_event_duplicated(report: dict[str, Any]) -> None:
    assert report["events_duplicated"] == 0, report["delivery"]["reraised_examples"]


def test_no_duplicate_work_order(report: dict[str, Any]) -> None:
    assert report["delivery"]["work_orders"] > 0
    assert report["work_orders_duplicated"] == 0


def test_telemetry_evictions_are_counted_as_the_edge_reports(report: dict[str, Any]) -> None:
    telemetry = report["telemetry"]
    assert telemetry["evicted_reported_by_edge"] >= 0, "the edge's /metrics was not read"
    assert telemetry["evictions_equal"], telemetry
    assert telemetry["tsdb_lines_stored"] > 0


def test_sqlite_stores_are_sound(report: dict[str, Any]) -> None:
    integrity = report["integrity"]
    assert integrity["outbox"] == "ok"
    assert integrity["deadletters"] == "ok"
    assert integrity["cloud"] == "ok"
    assert integrity["outbox_after_each_edge_kill"] == ["ok"]


def test_full_disk_degrades_then_recovers_by_itself(report: dict[str, Any]) -> None:
    disk = report["faults"]["disk"]
    if disk.get("skipped"):
        pytest.skip("; ".join(report["notes"]) or "the small disk could not be mounted")
    assert disk["edge_alive_while_full"]
    assert "store_full" in disk["degraded_reasons_seen"] or (
        "disk_low" in disk["degraded_reasons_seen"])
    assert disk["recovered_s"] is not None, disk.get("health_after_free")


def test_hostile_messages_each_refused_and_counted(report: dict[str, Any]) -> None:
    hostile = report["faults"]["hostile"]
    assert hostile["acked_by_broker"] == QUICK.hostile
    assert hostile["refused_counted"] == QUICK.hostile, hostile["by_reason"]
    assert sum(hostile["by_reason"].values()) == QUICK.hostile
    assert hostile["edge_alive"]


def test_the_report_says_ok(report: dict[str, Any]) -> None:
    assert report["ok"], report["failures"]
