"""The cross-validated choice of the pump model's settings (``edge.evaluation.skab``)."""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from edge.evaluation.skab import (
    Counts,
    cross_validate,
    evaluate,
    find_files,
    grid_counts,
    load_skab_file,
    main,
    pick,
)

HEADER = ["datetime", "Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure",
          "Temperature", "Thermocouple", "Voltage", "Volume Flow RateRMS", "anomaly",
          "changepoint"]


def write_recording(path: Path, seed: int, drop: float) -> None:
    """A pump-testbed-like file: 700 rows at 1 Hz, the flow drops by ``drop`` in 520-639."""
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(HEADER)
        for i in range(700):
            anomalous = 520 <= i < 640
            ts = datetime.fromtimestamp(1_600_000_000 + i + i // 50, UTC)
            load = rng.gauss(0, 1)
            w.writerow([ts.strftime("%Y-%m-%d %H:%M:%S"), rng.gauss(0.03, 0.002),
                        0.03 + 0.002 * load, 1 + 0.02 * load, rng.gauss(0.1, 0.01),
                        70.0 + i * 0.01, 25.0, rng.gauss(230, 1),
                        32 + 0.3 * load - (drop if anomalous else 0.0),
                        1.0 if anomalous else 0.0, 1.0 if i in (520, 640) else 0.0])


@pytest.fixture
def recordings(tmp_path: Path) -> list[Path]:
    for k, drop in enumerate([3.0, 1.0, 0.6, 2.0, 0.0]):
        write_recording(tmp_path / f"{k}.csv", k, drop)
    return find_files(tmp_path)


def test_replayed_grid_gives_exactly_the_figures_of_the_evaluation(
    recordings: list[Path],
) -> None:
    profile = load_profiles()["water_pump"]
    files = [load_skab_file(p, profile) for p in recordings]
    grid = {"span": (5, 10), "margin": (2.5, 4.0), "clear_level": (0.5,)}
    configs, counts = grid_counts(files, profile, grid)
    assert len(configs) == 4 and all(len(row) == len(files) for row in counts)
    for cfg, row in zip(configs, counts, strict=True):
        detectors = tuple(
            d.model_copy(update={"params": {**d.params, **cfg}}) if d.name == "pump_model" else d
            for d in profile.detectors
        )
        expected = evaluate(recordings, profile.model_copy(update={"detectors": detectors}))
        total = Counts()
        for c in row:
            total = total + c
        assert round(total.f1, 4) == expected["f1"]
        assert round(total.far, 2) == expected["far"]
        assert round(total.nab, 2) == expected["nab_standard"]


def counts(tp: int, fp: int, fn: int, tn: int, nab_raw: float = 0.0) -> Counts:
    return Counts(tp, fp, fn, tn, nab_raw, 2)


def test_pick_takes_the_best_f1_within_the_limits_else_the_lowest_far() -> None:
    table = [
        [counts(90, 30, 10, 70, 1.0)],   # F1 high, FAR 30 %
        [counts(80, 5, 20, 95, 1.0)],    # within limits
        [counts(70, 2, 30, 98, 1.0)],    # within limits, lower F1
        [counts(85, 5, 15, 95, -2.0)],   # NAB too low
    ]
    assert pick(table, [0], far_max=10.0, nab_min=33.0) == 1
    assert pick(table, [0], far_max=1.0, nab_min=33.0) == 2


def test_cross_validation_chooses_on_training_files_only() -> None:
    good_on_held_out_only = [counts(100, 0, 0, 100, 2.0)] + [counts(0, 0, 100, 100)] * 4
    good_on_training = [counts(0, 0, 100, 100)] + [counts(90, 1, 10, 99, 1.5)] * 4
    table = [good_on_held_out_only, good_on_training]
    [held] = cross_validate(table, folds=5, seeds=1)
    assert held.tp == 90 * 4  # file 0 is scored by the configuration chosen without it
    assert held.fn == 100 + 10 * 4


def test_select_command_prints_the_choice_and_held_out_figures(
    recordings: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["select", str(recordings[0].parent), "--seeds", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["candidates"] == 720
    assert set(result["chosen"]) == {"span", "shrinkage", "quantile", "margin", "clear_level",
                                     "cooldown_s"}
    assert 0.0 <= result["held_out"]["f1"]["min"] <= result["held_out"]["f1"]["max"] <= 1.0


def test_select_command_needs_five_labelled_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_recording(tmp_path / "0.csv", 0, 3.0)
    assert main(["select", str(tmp_path)]) == 2
    assert "at least 5" in capsys.readouterr().err
