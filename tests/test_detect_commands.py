"""``gatehouse detect`` and ``gatehouse eval skab`` on small inputs; the benchmark formulas."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.evaluation.metrics import Confusion, NabScore
from gatehouse.cli import main


def test_confusion_formulas() -> None:
    c = Confusion()
    c.add([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 1, 1, 5)
    assert c.f1 == pytest.approx(3 / (3 + 1))
    assert c.far == pytest.approx(100 / 6)
    assert c.mar == pytest.approx(25.0)


def test_nab_perfect_null_and_false_positive() -> None:
    times = [float(i) for i in range(300)]
    truth = [1 if i == 100 else 0 for i in range(300)]
    perfect = NabScore.empty()
    perfect.add(times, truth, truth)
    assert perfect.normalised()["standard"] == pytest.approx(100.0)
    null = NabScore.empty()
    null.add(times, truth, [0] * 300)
    assert null.normalised()["standard"] == pytest.approx(0.0)
    late_and_fp = NabScore.empty()
    pred = [1 if i in (150, 130) else 0 for i in range(300)]
    late_and_fp.add(times, truth, pred)
    scores = late_and_fp.normalised()
    assert 0 < scores["standard"] < 100
    assert scores["low_fp"] < scores["standard"]


def write_csv(path: Path, rows: list[list[object]], header: list[str], sep: str = ",") -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, delimiter=sep)
        w.writerow(header)
        w.writerows(rows)


def test_detect_generic_multivariate_one_row_per_input_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(1)
    rows: list[list[object]] = []
    for i in range(700):
        shift = 8.0 if 550 <= i < 600 else 0.0
        rows.append([1000 + i, rng.gauss(0, 1) + shift, rng.gauss(5, 1), "x" if i == 3 else 1.0])
    rows[10], rows[11] = rows[11], rows[10]
    path = tmp_path / "rec.csv"
    write_csv(path, rows, ["ts", "a", "b", "c"])
    assert main(["detect", str(path)]) == 0
    captured = capsys.readouterr()
    out = list(csv.reader(io.StringIO(captured.out)))
    assert out[0] == ["timestamp", "score", "alarm"]
    body = out[1:]
    assert len(body) == 700
    assert [int(r[0]) for r in body] == sorted(int(r[0]) for r in body)
    alarms = [int(r[2]) for r in body]
    assert sum(alarms[555:600]) > 35
    assert sum(alarms[:550]) <= 5
    assert "1 values were not numbers" in captured.err


def test_detect_univariate_and_kind_with_aliases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(2)
    rows = [[datetime.fromtimestamp(1_600_000_000 + i, UTC).strftime("%Y-%m-%d %H:%M:%S"),
             rng.gauss(0.03, 0.002), rng.gauss(0.03, 0.002), rng.gauss(1.0, 0.02),
             rng.gauss(3.0, 0.02), rng.gauss(230, 1), rng.gauss(30, 0.3) - (6 if i > 3900 else 0)]
            for i in range(4000)]
    header = ["datetime", "Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure",
              "Voltage", "Volume Flow RateRMS"]
    path = tmp_path / "pump.csv"
    write_csv(path, rows, header, sep=";")
    assert main(["detect", str(path), "--sep", ";", "--kind", "water_pump",
                 "--detector", "pump_model"]) == 0
    body = list(csv.reader(io.StringIO(capsys.readouterr().out)))[1:]
    assert len(body) == 4000
    assert sum(int(r[2]) for r in body[:3900]) == 0
    assert sum(int(r[2]) for r in body[3910:]) > 80
    assert main(["detect", str(path), "--sep", ";", "--columns", "Current"]) == 0
    body = list(csv.reader(io.StringIO(capsys.readouterr().out)))[1:]
    assert len(body) == 4000


def test_detect_bad_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    write_csv(path, [[1, 2.0], ["yesterday", 3.0]], ["ts", "a"])
    assert main(["detect", str(path)]) == 2
    assert "bad.csv:3" in capsys.readouterr().err
    assert main(["detect", str(path), "--columns", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["detect", str(path), "--kind", "toaster"]) == 2


def test_eval_skab_on_small_labelled_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = ["datetime", "Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure",
              "Temperature", "Thermocouple", "Voltage", "Volume Flow RateRMS", "anomaly",
              "changepoint"]
    for k in range(2):
        rng = random.Random(k)
        (tmp_path / "g").mkdir(exist_ok=True)
        rows = []
        for i in range(700):
            anomalous = 520 <= i < 640
            ts = datetime.fromtimestamp(1_600_000_000 + i, UTC).strftime("%Y-%m-%d %H:%M:%S")
            flow = rng.gauss(32, 0.3) - (8 if anomalous else 0)
            rows.append([ts, rng.gauss(0.03, 0.002), rng.gauss(0.03, 0.002), rng.gauss(1, 0.02),
                         rng.gauss(0.1, 0.01), 70.0 + i * 0.01, 25.0, rng.gauss(230, 1), flow,
                         1.0 if anomalous else 0.0, 1.0 if i in (520, 640) else 0.0])
        write_csv(tmp_path / "g" / f"{k}.csv", rows, header, sep=";")
    write_csv(tmp_path / "free.csv", [["2020-01-01 00:00:00", 1.0]], ["datetime", "x"])
    assert main(["eval", "skab", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["files"] == 2 and result["rows"] == 600
    for key in ("f1", "far", "mar", "nab_standard", "nab_low_fp", "nab_low_fn"):
        assert key in result
    assert result["f1"] > 0.9
    assert result["far"] < 10
    assert result["nab_standard"] > 50
