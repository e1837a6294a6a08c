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

import math
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

COMPACT_AT = 32
"""A sliding window kept in arrays with a moving start drops its expired prefix once it is
at least this long and at least half of the arrays (amortised O(1) per sample)."""


class RowBuffer:
    """Rows of ``width`` floats (NaN for missing), stored as float32 offsets from the first
    finite value of each column; :meth:`matrix` returns them as float64.

    An infinite value that comes before its column's first finite one is kept as missing
    (NaN); later ones stay infinite. A difference beyond float32's range (3.4e38) becomes
    infinite."""

    __slots__ = ("_data", "_offset", "_pending", "rows", "width")

    def __init__(self, width: int) -> None:
        if width < 1:
            raise ValueError("RowBuffer needs at least one column")
        self.width = width
        self.rows = 0
        self._data = array("f")
        self._offset = [math.nan] * width
        self._pending = width
        """Columns without a finite value yet (their offset is still NaN)."""

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

    def matrix(self) -> npt.NDArray[np.float64]:
        """All rows as a ``(rows, width)`` float64 matrix."""
        import numpy as np

        data = np.frombuffer(self._data, dtype=np.float32).astype(np.float64)
        offset = np.nan_to_num(np.asarray(self._offset, dtype=np.float64), nan=0.0)
        return data.reshape(self.rows, self.width) + offset

    def clear(self) -> None:
        """Forget every row (and release the memory)."""
        self._data = array("f")
        self._offset = [math.nan] * self.width
        self._pending = self.width
        self.rows = 0

    def nbytes(self) -> int:
        """Bytes held by the stored values (without the array's spare capacity)."""
        return self._data.itemsize * len(self._data)


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
