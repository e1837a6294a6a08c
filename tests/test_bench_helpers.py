"""The benchmarks' pure helpers: metrics parsing, percentiles, profile and memory summaries."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.bench_ingest import expected_samples, profile_summary
from bench.bench_memory import slope_mb_per_min
from bench.common import distribution_ms, parse_metrics, percentile

MB = 1024 * 1024


def test_parse_metrics_sums_labels_and_strips_prefix_and_total() -> None:
    text = (
        "# HELP gatehouse_edge_rejects_total rejected messages\n"
        "# TYPE gatehouse_edge_rejects_total counter\n"
        'gatehouse_edge_rejects_total{reason="bad_json"} 3\n'
        'gatehouse_edge_rejects_total{reason="bad_ts"} 2\n'
        "gatehouse_edge_messages_received_total 120\n"
        'gatehouse_edge_outbox_depth{lane="events"} 4\n'
        "garbage line without a number x\n"
    )
    m = parse_metrics(text)
    assert m["rejects"] == 5
    assert m["messages_received"] == 120
    assert m["outbox_depth"] == 4
    assert "garbage" not in m


def test_percentiles_interpolate() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([0.0, 10.0], 0.99) == 9.9
    assert math.isnan(percentile([], 0.5))
    d = distribution_ms([0.1, 0.2, 0.3])
    assert d["p50_ms"] == 200.0 and d["max_ms"] == 300.0 and d["count"] == 3


def test_expected_samples_counts_fields_of_telemetry_only() -> None:
    msgs = [
        ("gh/s/water_pump/p1/telemetry", json.dumps({"ts": 1, "a": 1, "b": 2}).encode()),
        ("gh/s/access_gate/g1/event", json.dumps({"ts": 1, "type": "forced"}).encode()),
        ("gh/s/elevator/e1/telemetry", json.dumps({"ts": 1, "floor": 3}).encode()),
    ]
    assert expected_samples(msgs) == 3


def test_profile_summary_shares_self_and_inclusive_time(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "thread (0x1): edge-runner;_loop (edge/runner.py:10);"
        "Validator.validate (edge/validate.py:5) 30\n"
        "thread (0x1): edge-runner;_loop (edge/runner.py:10);"
        "Detection.observe (edge/detection.py:7) 50\n"
        "thread (0x2): paho;_loop (paho/client.py:3) 20\n"
    )
    s = profile_summary(raw)
    assert s["samples"] == 100
    self_share = dict(s["self"])
    assert self_share["Detection.observe (detection.py)"] == 0.5
    assert self_share["Validator.validate (validate.py)"] == 0.3
    inclusive = dict(s["inclusive"])
    assert inclusive["_loop (runner.py)"] == 0.8
    assert dict(s["threads"])["edge-runner"] == 0.8
    assert s["stages"]["validation"] == 0.3
    assert s["stages"]["detection"] == 0.5


def test_memory_slope_is_mb_per_minute() -> None:
    flat = [(float(t), 100 * MB) for t in range(0, 600, 10)]
    assert slope_mb_per_min(flat) == 0.0
    rising = [(float(t), 100 * MB + t * MB // 60) for t in range(0, 600, 10)]
    assert abs(slope_mb_per_min(rising) - 1.0) < 0.01
    assert slope_mb_per_min([(0.0, MB)]) == 0.0
