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
* :class:`TimeValueWindow`: the samples of a sliding time window as two ``float64`` arrays
  with a moving start (expired samples are dropped in amortised O(1)).
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

_COMPACT_AT = 32
"""A :class:`TimeValueWindow` drops its expired prefix once it is at least this long and
at least half of the arrays."""


class RowBuffer:
    """Rows of ``width`` floats (NaN for missing), stored as float32 offsets from the first
    finite value of each column; :meth:`matrix` returns them as float64."""

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


class TimeValueWindow:
    """``(t, v)`` samples in time order, oldest first, as two float64 arrays."""

    __slots__ = ("_start", "_t", "_v")

    def __init__(self) -> None:
        self._t = array("d")
        self._v = array("d")
        self._start = 0

    def __len__(self) -> int:
        return len(self._t) - self._start

    def append(self, t: float, v: float) -> None:
        self._t.append(t)
        self._v.append(v)

    def oldest(self) -> tuple[float, float]:
        """The oldest sample (the window must not be empty)."""
        return self._t[self._start], self._v[self._start]

    def first_t(self) -> float:
        return self._t[self._start]

    def last_t(self) -> float:
        return self._t[-1]

    def pop_oldest(self) -> tuple[float, float]:
        """Remove and return the oldest sample."""
        i = self._start
        out = self._t[i], self._v[i]
        i += 1
        if i >= _COMPACT_AT and 2 * i >= len(self._t):
            del self._t[:i]
            del self._v[:i]
            i = 0
        self._start = i
        return out

    def items(self) -> list[tuple[float, float]]:
        """Every sample, oldest first."""
        s = self._start
        return list(zip(self._t[s:], self._v[s:], strict=True))

    def clear(self) -> None:
        self._t = array("d")
        self._v = array("d")
        self._start = 0

    def shift_times(self, delta: float) -> None:
        """Subtract ``delta`` from every stored time."""
        s = self._start
        self._t = array("d", (t - delta for t in self._t[s:]))
        self._v = self._v[s:]
        self._start = 0

    def nbytes(self) -> int:
        """Bytes held by the live samples."""
        return 16 * len(self)


class SlotMeans:
    """Running means of ``size`` slots (plain mean, then exponential once a slot has seen the
    caller's ``cap`` samples), each with the count of distinct periods (days, weeks) that
    fed it. 20 bytes per slot."""

    __slots__ = ("_last", "_mean", "_n", "_periods")

    _NO_PERIOD = -(2**31)

    def __init__(self, size: int) -> None:
        self._mean = array("d", bytes(8 * size))
        self._n = array("I", bytes(4 * size))
        """Samples seen, counted up to the cap (all the mean's weight needs)."""
        self._periods = array("i", bytes(4 * size))
        self._last = array("i", [self._NO_PERIOD]) * size

    def add(self, slot: int, v: float, period: int, cap: int) -> None:
        """Fold ``v`` into ``slot``'s mean; ``period`` is the day or week it belongs to."""
        n = min(self._n[slot] + 1, cap)
        self._n[slot] = n
        self._mean[slot] += (v - self._mean[slot]) / n
        if period != self._last[slot]:
            self._periods[slot] += 1
            self._last[slot] = period

    def mean(self, slot: int) -> float:
        return self._mean[slot]

    def seen_before(self, slot: int, period: int) -> int:
        """Distinct periods other than ``period`` that fed ``slot``."""
        return self._periods[slot] - (1 if self._last[slot] == period else 0)
