"""Compact per-device detector state: flat typed arrays instead of lists of Python objects.

A gateway keeps one set of monitors per device (5,000 devices on a large estate), so a few
hundred bytes per sample or per slot add up to hundreds of megabytes. A Python float in a
list costs 32 bytes (8 for the pointer, 24 for the object) and a ``(t, v)`` tuple in a deque
about 110; these containers store 4 or 8 bytes per value:

* :class:`RowBuffer`: the warm-up samples of a learned model (rows of ``d`` fields) as one
  growing ``float32`` array, each value stored as its difference from the first finite value
  of its column (so float32's 7 digits apply to the spread of the data, not its magnitude:
  a 230 V supply varying by 0.5 V keeps its resolution); :meth:`RowBuffer.matrix` gives the
  float64 matrix back.
* the trend detector's sliding windows (:class:`edge.detectors.trend.LinearTrend`): two
  ``float64`` arrays (time, value) with a moving start, shared by the window's line and its
  shorter forecast line.
* :class:`SlotMeans`: running means of a fixed set of slots (hour-of-week baselines) with
  the number of distinct periods that fed each slot.

``array.array`` rather than numpy: these are read and written one value at a time from
Python, where ``array`` returns plain floats and costs less per access than numpy scalars
(and numpy is only imported when a model is fitted).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

SPILL_ROWS = 256
"""With a spill folder set, a warm-up buffer keeps at most this many rows in memory."""
_spill_dir: Path | None = None
_spill_names = itertools.count()


def spill_warmup_rows_to(folder: Path | None) -> None:
    """Keep learned models' warm-up rows in files under ``folder`` instead of in memory.

    The edge agent sets its data folder's ``warmup/``: on a large estate the pumps' warm-up
    rows (84 KiB per pump until its model is fitted, an hour of running) would otherwise grow
    the agent's memory for hours; on disk they cost a write of 6 KiB per pump every few
    minutes and are read back once, at the fit. Files left by an earlier run (its models
    start their warm-up again) are removed. ``None`` keeps everything in memory (the
    default: ``gatehouse detect``, the evaluations, the tests). If a file cannot be written
    (disk full) the rows simply stay in memory.
    """
    global _spill_dir
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("warmup-*.f32"):
            stale.unlink(missing_ok=True)
    _spill_dir = folder


def stop_spilling_to(folder: Path) -> None:
    """Back to in-memory warm-up rows, if ``folder`` is where they were going (agent stop)."""
    global _spill_dir
    if _spill_dir == folder:
        _spill_dir = None


COMPACT_AT = 32
"""A sliding window kept in arrays with a moving start drops its expired prefix once it is
at least this long and at least a quarter of the arrays (:data:`COMPACT_SHARE`)."""
COMPACT_SHARE = 4
"""The prefix is dropped once it is at least 1 / ``COMPACT_SHARE`` of the arrays: a window
then holds at most a third more than its samples (a half would allow twice as many), for a
copy of three values per sample added (amortised O(1), a ``memmove``)."""


class RowBuffer:
    """Rows of ``width`` floats (NaN for missing), stored as float32 offsets from the first
    finite value of each column; :meth:`matrix` returns them as float64.

    An infinite value that comes before its column's first finite one is kept as missing
    (NaN); later ones stay infinite. A difference beyond float32's range (3.4e38) becomes
    infinite.

    With :func:`spill_warmup_rows_to` set, every :data:`SPILL_ROWS` rows go to a file of
    their own (raw float32, appended), which :meth:`clear` or the buffer's end removes."""

    __slots__ = ("_data", "_file", "_offset", "_pending", "_spilled", "rows", "width")

    def __init__(self, width: int) -> None:
        if width < 1:
            raise ValueError("RowBuffer needs at least one column")
        self.width = width
        self.rows = 0
        self._data = array("f")
        self._offset = [math.nan] * width
        self._pending = width
        """Columns without a finite value yet (their offset is still NaN)."""
        self._file: Path | None = None
        self._spilled = 0
        """Values written to ``_file`` (they come before those in ``_data``)."""

    def append(self, row: Sequence[float]) -> None:
        """Add one row (``width`` values; NaN for a missing one)."""
        off = self._offset
        if self._pending:
            for i, v in enumerate(row):
                if off[i] != off[i] and v == v and not math.isinf(v):
                    off[i] = v
                    self._pending -= 1
        self._data.extend([v - o for v, o in zip(row, off, strict=True)])
        self.rows += 1
        if _spill_dir is not None and len(self._data) >= SPILL_ROWS * self.width:
            self._spill(_spill_dir)

    def _spill(self, folder: Path) -> None:
        path = self._file or folder / f"warmup-{os.getpid()}-{next(_spill_names)}.f32"
        try:
            with open(path, "ab") as out:
                self._data.tofile(out)
        except OSError as exc:  # disk full, folder gone: keep the rows in memory
            log.debug("warm-up rows stay in memory: %s", exc)
            with contextlib.suppress(OSError):  # cut a partial write off
                os.truncate(path, self._spilled * self._data.itemsize)
            return
        self._file = path
        self._spilled += len(self._data)
        self._data = array("f")

    def matrix(self) -> npt.NDArray[np.float64]:
        """All rows as a ``(rows, width)`` float64 matrix."""
        import numpy as np

        data = np.frombuffer(self._data, dtype=np.float32)
        if self._file is not None:
            try:
                spilled = np.fromfile(self._file, dtype=np.float32, count=self._spilled)
            except OSError as exc:  # the data folder was wiped: learn from what is left
                log.warning("warm-up rows in %s lost (%s); fitting on the rest", self._file, exc)
                spilled = np.empty(0, dtype=np.float32)
            data = np.concatenate([spilled[: len(spilled) - len(spilled) % self.width], data])
        data = data.astype(np.float64)
        offset = np.nan_to_num(np.asarray(self._offset, dtype=np.float64), nan=0.0)
        return data.reshape(len(data) // self.width, self.width) + offset

    def columns(self) -> list[list[float]]:
        """All values column by column, as lists of floats (float64), without numpy: the
        same numbers as :meth:`matrix`'s columns."""
        values = array("f")
        if self._file is not None:
            try:
                with open(self._file, "rb") as src:
                    values.fromfile(src, self._spilled)
            except (OSError, EOFError) as exc:  # wiped or cut short: learn from what is left
                log.warning("warm-up rows in %s lost (%s); fitting on the rest", self._file, exc)
            del values[len(values) - len(values) % self.width:]
        values.extend(self._data)
        w = self.width
        columns = []
        for j, o in enumerate(self._offset):
            offset = 0.0 if o != o else o
            columns.append([v + offset for v in values[j::w]])
        return columns

    def clear(self) -> None:
        """Forget every row (and release the memory and the spill file)."""
        self._drop_file()
        self._data = array("f")
        self._offset = [math.nan] * self.width
        self._pending = self.width
        self.rows = 0

    def nbytes(self) -> int:
        """Bytes held in memory by the stored values (without the array's spare capacity)."""
        return self._data.itemsize * len(self._data)

    def _drop_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink(missing_ok=True)
            self._file = None
            self._spilled = 0

    def __del__(self) -> None:
        self._drop_file()


class SlotMeans:
    """Running means of ``size`` slots (plain mean of the first ``cap`` samples, then
    exponential with weight ``1 / cap``), each with the count of distinct periods (days,
    weeks) that fed it. 16 bytes per slot."""

    __slots__ = ("_cap", "_last", "_mean", "_n", "_periods")

    _NO_PERIOD = -(2**31)
    _MAX_PERIODS = 2**16 - 1
    """Periods are counted up to this (179 years of days): only small counts are compared."""

    def __init__(self, size: int, cap: int) -> None:
        if cap < 1:
            raise ValueError("SlotMeans: cap must be at least 1")
        self._cap = cap
        self._mean = array("d", bytes(8 * size))
        self._n = array("H" if cap <= 2**16 - 1 else "I", [0]) * size
        """Samples seen, counted up to the cap (all the mean's weight needs)."""
        self._periods = array("H", [0]) * size
        self._last = array("i", [self._NO_PERIOD]) * size

    def add(self, slot: int, v: float, period: int) -> None:
        """Fold ``v`` into ``slot``'s mean; ``period`` is the day or week it belongs to."""
        n = self._n[slot]
        if n < self._cap:
            n += 1
            self._n[slot] = n
        self._mean[slot] += (v - self._mean[slot]) / n
        if period != self._last[slot]:
            if self._periods[slot] < self._MAX_PERIODS:
                self._periods[slot] += 1
            self._last[slot] = period

    def mean(self, slot: int) -> float:
        return self._mean[slot]

    def seen_before(self, slot: int, period: int) -> int:
        """Distinct periods other than ``period`` that fed ``slot``."""
        return self._periods[slot] - (1 if self._last[slot] == period else 0)
