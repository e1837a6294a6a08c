"""The scenario evaluation on a few fault types (the full run is in the benchmark record)."""

from __future__ import annotations

from edge.evaluation.scenarios import evaluate


def test_scenarios_detect_injected_faults_and_count_false_alarms() -> None:
    result = evaluate(1, 0.05, seed=3, types=["gate.brute_force", "pump.dry_running",
                                               "camera.offline"])
    per = result["per_type"]
    for ftype in ("gate.brute_force", "pump.dry_running", "camera.offline"):
        assert per[ftype]["injected"] == 1
        assert per[ftype]["recall"] == 1.0
        assert per[ftype]["median_delay_s"] is not None
    assert result["device_days"] > 0
    assert result["false_alarms"] == sum(e["false_alarms"] for e in per.values())


def test_trend_fault_reports_forecast_error() -> None:
    result = evaluate(1, 0.01, seed=4, types=["pump.bearing_wear"])
    entry = result["per_type"]["pump.bearing_wear"]
    assert entry["recall"] == 1.0
    assert entry["forecast_error_median"] < 0.25
