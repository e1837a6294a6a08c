"""Plain-Python linear algebra for the few channels of one device (d of 10 or fewer).

The pump model works on six channels. For vectors that small, numpy's per-call overhead is
larger than the arithmetic, and importing it costs the agent about 28 MB of resident
memory; these functions do the same float64 arithmetic with lists. They follow numpy's
definitions (``np.cov`` with ``ddof=1``, ``np.quantile``'s default linear interpolation),
so results agree with numpy's to rounding (summation order differs in the last bits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Vector = list[float]
Matrix = list[list[float]]


def inverse(matrix: Sequence[Sequence[float]]) -> Matrix:
    """The inverse by Gauss-Jordan elimination with partial pivoting.

    Raises ``ZeroDivisionError`` for a singular matrix (the callers shrink towards the
    identity first, so theirs are well conditioned)."""
    d = len(matrix)
    work = [list(row) + [1.0 if i == j else 0.0 for j in range(d)]
            for i, row in enumerate(matrix)]
    for col in range(d):
        pivot = max(range(col, d), key=lambda r: abs(work[r][col]))
        if work[pivot][col] == 0.0:
            raise ZeroDivisionError("singular matrix")
        work[col], work[pivot] = work[pivot], work[col]
        lead = work[col]
        p = lead[col]
        for k in range(2 * d):
            lead[k] /= p
        for r in range(d):
            if r != col:
                row = work[r]
                f = row[col]
                if f != 0.0:
                    for k in range(2 * d):
                        row[k] -= f * lead[k]
    return [row[d:] for row in work]


def quadratic(diff: Sequence[float], matrix: Sequence[Sequence[float]]) -> float:
    """``diff`` transposed times ``matrix`` times ``diff``."""
    total = 0.0
    d = len(diff)
    for j in range(d):
        s = 0.0
        for i in range(d):
            s += diff[i] * matrix[i][j]
        total += s * diff[j]
    return total


def quantile(values: Sequence[float], q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation between the closest ranks)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    frac = pos - lo
    a, b = ordered[lo], ordered[hi]
    if frac >= 0.5:  # numpy's _lerp: from the nearer end, exact at both ends
        return b - (b - a) * (1.0 - frac)
    return a + (b - a) * frac
