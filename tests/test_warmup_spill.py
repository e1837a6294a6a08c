"""Learned models' warm-up rows kept in files (the edge agent's setting) give the same
matrix as in memory, hold at most a few hundred rows in memory, and leave no file behind."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.detectors import compact
from edge.detectors.compact import SPILL_ROWS, RowBuffer, spill_warmup_rows_to
from edge.detectors.scorers import MewmaScorer


@pytest.fixture
def spill(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "warmup"
    spill_warmup_rows_to(folder)
    try:
        yield folder
    finally:
        spill_warmup_rows_to(None)


def rows(n: int, width: int = 6, seed: int = 1) -> list[list[float]]:
    rng = random.Random(seed)
    out = [[230.0 + rng.gauss(0, 0.5) for _ in range(width)] for _ in range(n)]
    out[3][-1] = math.nan
    return out


def test_spilled_rows_read_back_the_same_and_stay_small_in_memory(spill: Path) -> None:
    data = rows(3600)
    in_memory = RowBuffer(6)
    spill_warmup_rows_to(None)
    for row in data:
        in_memory.append(row)
    spill_warmup_rows_to(spill)
    spilled = RowBuffer(6)
    for row in data:
        spilled.append(row)
        assert spilled.nbytes() < SPILL_ROWS * 6 * 4
    assert len(list(spill.glob("warmup-*.f32"))) == 1
    np.testing.assert_array_equal(spilled.matrix(), in_memory.matrix())
    spilled.clear()
    assert list(spill.glob("*")) == []


def test_a_dropped_buffer_removes_its_file_and_a_new_run_removes_stale_ones(spill: Path) -> None:
    buf = RowBuffer(2)
    for row in rows(SPILL_ROWS * 2, width=2):
        buf.append(row)
    assert len(list(spill.glob("warmup-*.f32"))) == 1
    del buf
    assert list(spill.glob("*")) == []
    (spill / "warmup-1-1.f32").write_bytes(b"\x00" * 64)  # left by a killed run
    spill_warmup_rows_to(spill)
    assert list(spill.glob("*")) == []


def test_when_the_folder_cannot_be_written_the_rows_stay_in_memory(spill: Path) -> None:
    spill.rmdir()
    spill.write_text("not a folder")  # writes under it fail
    data = rows(SPILL_ROWS * 3, width=3)
    buf = RowBuffer(3)
    for row in data:
        buf.append(row)
    assert buf.nbytes() == len(data) * 3 * 4
    expected = RowBuffer(3)
    compact._spill_dir = None
    for row in data:
        expected.append(row)
    np.testing.assert_array_equal(buf.matrix(), expected.matrix())


def test_spilled_rows_that_cannot_be_read_back_leave_the_rest(spill: Path) -> None:
    data = rows(SPILL_ROWS + 10, width=3)
    buf = RowBuffer(3)
    for row in data:
        buf.append(row)
    for f in spill.glob("*.f32"):
        f.unlink()  # the data folder was wiped under the running agent
    assert buf.matrix().shape == (10, 3)


def test_a_pump_model_learns_the_same_with_its_warm_up_on_disk(spill: Path) -> None:
    fields = ["a", "b", "c"]
    rng = random.Random(7)
    samples = [{f: 10.0 + rng.gauss(0, 1) for f in fields} for _ in range(1500)]
    probe = [{f: 10.0 + rng.gauss(0.5, 1) for f in fields} for _ in range(50)]

    def scores() -> list[float]:
        model = MewmaScorer(fields, warmup=1200, span=10)
        for x in samples:
            if model.ready:
                model.score_one(x)
            model.learn_one(x)
        return [model.score_one(x) for x in probe]

    on_disk = scores()
    spill_warmup_rows_to(None)
    assert scores() == on_disk
    assert list(spill.glob("*")) == []
