"""CSV replay: SKAB headers map to the water-pump fields, offsets and labels are kept."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from simulators.replay import RecordingError, RowPublisher, read_recording

SKAB = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "skab" / "valve1" / "0.csv"
"""The pump testbed beside the checkout (../shared), as CI lays it out."""


@pytest.fixture
def skab_rows(tmp_path: Path) -> Path:
    """The header, 20 normal rows and 10 labelled ones of a SKAB file (or a copy of them)."""
    if SKAB.exists():
        lines = SKAB.read_text(encoding="utf-8").splitlines()
        header, body = lines[0], lines[1:]
        normal = [r for r in body if r.split(";")[-2] in ("0.0", "0")][:20]
        anomalous = [r for r in body if r.split(";")[-2] in ("1.0", "1")][:10]
        text = "\n".join([header, *normal, *anomalous]) + "\n"
    else:  # the same shape, for machines without the dataset
        header = (
            "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;"
            "Thermocouple;Voltage;Volume Flow RateRMS;anomaly;changepoint"
        )
        rows = [
            f"2020-03-09 10:14:{i:02d};0.0265;0.0401;1.33;0.0547;79.3;26.0;233.0;32.0;"
            f"{1.0 if i >= 20 else 0.0};0.0"
            for i in range(30)
        ]
        text = "\n".join([header, *rows]) + "\n"
    path = tmp_path / "skab.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_skab_columns_map_to_pump_fields(skab_rows: Path) -> None:
    rec = read_recording(skab_rows, load_profiles()["water_pump"])
    assert set(rec.fields) == {
        "accel1_rms",
        "accel2_rms",
        "current_a",
        "pressure_bar",
        "temperature_c",
        "thermocouple_c",
        "voltage_v",
        "flow_lpm",
    }
    assert rec.ignored_columns == ("changepoint",)
    assert rec.bad_cells == 0
    assert len(rec.rows) == 30
    offset, first = rec.rows[0]
    assert offset == 0.0
    assert 0.02 < first["accel1_rms"] < 0.03
    assert 200 < first["voltage_v"] < 260
    offsets = [o for o, _ in rec.rows]
    assert offsets == sorted(offsets)
    assert 0.5 <= rec.period <= 2.0


def test_labelled_rows_become_one_anomaly_interval(skab_rows: Path) -> None:
    rec = read_recording(skab_rows, load_profiles()["water_pump"])
    assert len(rec.anomalies) == 1
    start, end = rec.anomalies[0]
    assert start == rec.rows[20][0]
    assert end == pytest.approx(rec.rows[-1][0] + rec.period)


def test_bad_cells_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "datetime;Current;Pressure;Mystery\n"
        "2020-01-01 00:00:00;1.0;2.0;x\n"
        "2020-01-01 00:00:01;oops;2.1;y\n"
        "garbage;1.0;2.0;z\n"
        "2020-01-01 00:00:02;1.2;;w\n",
        encoding="utf-8",
    )
    rec = read_recording(path, load_profiles()["water_pump"])
    assert [values for _, values in rec.rows] == [
        {"current_a": 1.0, "pressure_bar": 2.0},
        {"pressure_bar": 2.1},
        {"current_a": 1.2},
    ]
    assert rec.bad_cells == 3
    assert rec.ignored_columns == ("Mystery",)
    assert rec.anomalies == []


def test_missing_time_column_or_fields_fail_clearly(tmp_path: Path) -> None:
    pump = load_profiles()["water_pump"]
    path = tmp_path / "r.csv"
    path.write_text("time,Current\n0,1\n", encoding="utf-8")
    with pytest.raises(RecordingError, match="no time column 'datetime'"):
        read_recording(path, pump)
    path.write_text("datetime;Foo\n0;1\n", encoding="utf-8")
    with pytest.raises(RecordingError, match="no column maps"):
        read_recording(path, pump)
    with pytest.raises(RecordingError, match="cannot read"):
        read_recording(tmp_path / "missing.csv", pump)


def test_rows_are_published_with_their_offsets_and_loops(skab_rows: Path) -> None:
    rec = read_recording(skab_rows, load_profiles()["water_pump"])
    sent: list[tuple[float, dict[str, float]]] = []
    passes: list[tuple[int, float]] = []
    stop = threading.Event()

    def publish(ts: float, values: dict[str, float]) -> None:
        sent.append((ts, values))
        if len(sent) == 2 * len(rec.rows):
            stop.set()

    rows = RowPublisher(rec, publish, start_ts=1000.0, speed=1e6, loop=True, stop=stop)
    rows.run(lambda index, base: passes.append((index, base)))
    assert len(sent) == 2 * len(rec.rows)
    assert [ts - 1000.0 for ts, _ in sent[: len(rec.rows)]] == [o for o, _ in rec.rows]
    assert sent[len(rec.rows)][0] == pytest.approx(1000.0 + rec.length)
    assert passes[:2] == [(0, 1000.0), (1, pytest.approx(1000.0 + rec.length))]
    assert sent[0][1] == rec.rows[0][1]
