"""Ground truth files: written line by line, read back exactly, broken lines named."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_profiles.site import DeviceConfig
from simulators.models import FaultSpec, simulate_offline
from simulators.truth import GroundTruth, TruthError, TruthRecord, read_truth


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    specs = [
        FaultSpec("b1-pump-1", "pump.bearing_wear", 100.0, 500.5, {"ramp": 300.0}),
        FaultSpec("gate-1", "gate.forced_open", 200.0, 230.0),
    ]
    with GroundTruth(path) as truth:
        for spec in specs:
            truth.record(spec)
        assert len(truth.records) == 2
    records = read_truth(path)
    assert records == [
        TruthRecord("b1-pump-1", "water_pump", "pump.bearing_wear", 100.0, 500.5, {"ramp": 300.0}),
        TruthRecord("gate-1", "access_gate", "gate.forced_open", 200.0, 230.0, {}),
    ]
    assert [r.to_fault() for r in records] == specs


def test_lines_are_on_disk_as_soon_as_recorded(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    truth = GroundTruth(path)
    truth.record(FaultSpec("m1", "meter.voltage_sag", 1.0, 2.0))
    assert len(read_truth(path)) == 1
    truth.close()


def test_offline_run_records_completed_specs() -> None:
    truth = GroundTruth()
    pump = DeviceConfig(id="p1", kind="water_pump")
    spec = FaultSpec("p1", "pump.bearing_wear", 1000.0, 5000.0, {"ramp": 3600.0})
    list(simulate_offline([pump], 0.0, 10.0, [spec], seed=1, truth=truth))
    (rec,) = truth.records
    assert rec.kind == "water_pump"
    assert rec.params["limit_cross_ts"] == 4600.0
    assert rec.params["field"] == "accel1_rms"
    assert 0.02 < rec.params["baseline"] < 0.04
    assert rec.params["slope_per_hour"] == pytest.approx(0.5 - rec.params["baseline"], rel=1e-3)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"device_id": "a", "kind": "camera", "type": "camera.offline", "start": 1}', "end"),
        ('{"device_id": "a", "kind": "k", "type": "t", "start": "x", "end": 2}', "bad value"),
    ],
)
def test_broken_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    good = TruthRecord("a", "camera", "camera.offline", 1.0, 2.0).to_json()
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(TruthError, match=rf"t.jsonl:2: .*{message}"):
        read_truth(path)
