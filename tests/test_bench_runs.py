"""The short versions of the performance benchmarks run end to end (no timing assertions).

Each benchmark runs with ``--quick`` as its own process against real servers it starts
itself (Mosquitto, VictoriaMetrics, PostgreSQL, ``gatehouse cloud serve``, ``gatehouse
edge``); the test checks the JSON it wrote: every message accounted for, every fault's
order seen, no duplicated order. Speed is never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick", "--json-out", str(out),
         *extra],
        cwd=REPO, capture_output=True, text=True, timeout=400, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    printed, _, human = done.stdout.partition("\n}\n")
    assert json.loads(printed + "}") == result, "the JSON printed is the JSON written"
    assert human.strip(), "a human summary follows the JSON"
    return result


def test_ingest_accounts_for_every_message(tmp_path: Path) -> None:
    result = run_bench("bench_ingest.py", tmp_path, "--qos", "1")
    r = result["qos"]["1"]
    n = result["messages"]
    assert r["bare_subscriber"]["received"] == n
    assert r["agent"]["received"] == r["agent"]["acked"] == n
    assert r["agent"]["readings"] + r["agent"]["native_events"] == n
    assert r["agent"]["rejected"] == 0
    assert r["tsdb_samples_stored"] == r["tsdb_samples_expected"] > n
    assert len(r["kinds"]) >= 4
    assert r["none_dropped"] is True
    assert r["ratio_agent_to_bare"] > 0


def test_latency_sees_every_fault_as_a_work_order(tmp_path: Path) -> None:
    result = run_bench("bench_latency.py", tmp_path)
    edge = result["edge_path"]
    assert edge["faults"] == edge["orders_seen"] == 20
    assert result["all_orders_seen"] is True
    assert result["direct_to_cloud_baseline"]["orders_seen"] == 5
    assert result["background_load"]["agent_rejected"] == 0
    assert edge["visible"]["p50_ms"] > 0
    assert edge["visible"]["p99_ms"] >= edge["visible"]["p50_ms"]


def test_memory_samples_the_agent_while_it_keeps_up(tmp_path: Path) -> None:
    result = run_bench("bench_memory.py", tmp_path)
    assert result["devices"] == 40 * 10 + 4
    assert result["published"] > 0
    assert 0 < result["agent_received"] <= result["published"]
    assert result["agent_rejected"] == 0
    rss = result["rss_mb"]
    assert 0 < rss["baseline_idle_all_monitors_built"] <= rss["peak"]
    assert len(result["series"]) >= 5


def test_scaleout_sites_and_shared_subscription_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    result = run_bench("bench_scaleout.py", tmp_path)
    for scenario in (result["sites"]["scaled"], result["sites"]["baseline_one_worker"]):
        assert scenario["gave_up"] == 0
        assert scenario["accepted"] == scenario["events_unique"] == scenario["events_stored"]
        assert scenario["resent"] > 0 and scenario["duplicates"] >= scenario["resent"]
        assert scenario["duplicated_orders"] == 0
        assert scenario["orders"] == scenario["device_type_pairs"]
    assert result["sites"]["scaled"]["workers"] == 2
    shared = result["shared_subscription"]
    assert shared["received_total"] == shared["published"]
    assert all(n > 0 for n in shared["received_per_agent"])
    assert shared["fault_orders"] == shared["fault_pumps"]
    assert shared["duplicated_orders"] == 0
