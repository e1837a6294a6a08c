"""The pipeline benchmark's parts run on a small input and account for every message (no
timing assertions: speed is measured by the benchmark itself, never by a test)."""

from __future__ import annotations

from pathlib import Path

from bench.bench_edge_pipeline import (
    GzipSink,
    estate,
    messages,
    run_pipeline,
    run_stages,
    tsdb_writer,
)


def test_stages_and_the_whole_agent_account_for_every_message(tmp_path: Path) -> None:
    site = estate(tmp_path / "a")
    msgs = messages(site, 300)
    assert len(msgs) == 300
    stages = run_stages(site, msgs, burst=50, runs=1)
    assert stages["messages"] == 300
    for key in ("json_loads_us_per_message", "validate_us_per_message",
                "tsdb_write_us_per_reading"):
        assert stages[key] > 0
    sink = GzipSink()
    whole = run_pipeline(
        estate(tmp_path / "b"), msgs, detect=True,
        outputs={"influxdb": tsdb_writer(site, sink)}, prefill=True,
    )
    assert whole["readings"] == 300 and whole["rejected"] == 0
    assert sink.lines == 300, "every reading reached the TSDB output before its ack"
    assert whole["cpu_us_per_message"] > 0
