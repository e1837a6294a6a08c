"""Scoring formulas of the pump benchmark (SKAB), written from their published definitions.

* Outlier detection, point by point over pooled test rows:
  ``F1 = TP / (TP + (FN + FP) / 2)``, ``FAR = FP / (FP + TN) * 100``,
  ``MAR = FN / (FN + TP) * 100``.
* Changepoint detection, NAB scoring: a window of ``window_s`` seconds to the right of each
  labelled changepoint. In each window the first predicted changepoint scores on a scaled
  curve that falls from ``A_tp`` at the window's start to ``A_fp`` at its end (SKAB's
  "improved" tanh scale); a window without a prediction scores ``A_fn``; every prediction
  outside all windows scores ``A_fp``. Scores are summed over all files and normalised:
  ``100 * (S - S_null) / (S_perfect - S_null)`` with ``S_null = A_fn * windows`` (no
  detector) and ``S_perfect = A_tp * windows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

NAB_PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
"""Profile -> (A_tp, A_fp, A_fn)."""


@dataclass
class Confusion:
    """Point-wise confusion counts, summable over files."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, truth: Sequence[int], pred: Sequence[int]) -> None:
        """Count one file's rows (``truth`` and ``pred`` are 0/1, equal length)."""
        if len(truth) != len(pred):
            raise ValueError("truth and prediction lengths differ")
        for t, p in zip(truth, pred, strict=True):
            if t and p:
                self.tp += 1
            elif p:
                self.fp += 1
            elif t:
                self.fn += 1
            else:
                self.tn += 1

    @property
    def f1(self) -> float:
        denom = self.tp + (self.fn + self.fp) / 2
        return self.tp / denom if denom else 0.0

    @property
    def far(self) -> float:
        """False-alarm rate, percent."""
        denom = self.fp + self.tn
        return 100.0 * self.fp / denom if denom else 0.0

    @property
    def mar(self) -> float:
        """Missed-alarm rate, percent."""
        denom = self.fn + self.tp
        return 100.0 * self.fn / denom if denom else 0.0


def _scale(position: int, length: int, a_tp: float, a_fp: float) -> float:
    """Score of a first detection at ``position`` (0-based) of a window of ``length`` rows."""
    if length <= 1:
        return a_tp
    x = -math.pi / 2 + math.pi * position / (length - 1)
    half = (a_tp - a_fp) / 2
    return half * -math.tanh(x) / math.tanh(math.pi / 2) + half + a_fp


@dataclass
class NabScore:
    """NAB score accumulated over files for the three weight profiles."""

    raw: dict[str, float]
    windows: int = 0

    @classmethod
    def empty(cls) -> NabScore:
        return cls(raw=dict.fromkeys(NAB_PROFILES, 0.0))

    def add(
        self,
        times: Sequence[float],
        truth_cp: Sequence[int],
        pred_cp: Sequence[int],
        window_s: float = 60.0,
    ) -> None:
        """Score one file: ``times`` in seconds, 0/1 labelled and predicted changepoints."""
        n = len(times)
        if len(truth_cp) != n or len(pred_cp) != n:
            raise ValueError("times, truth and prediction lengths differ")
        windows: list[tuple[int, int]] = []
        for i in range(n):
            if truth_cp[i]:
                j = i
                while j + 1 < n and times[j + 1] - times[i] <= window_s:
                    j += 1
                windows.append((i, j))
        in_window = [False] * n
        for a, b in windows:
            for k in range(a, b + 1):
                in_window[k] = True
        outside = sum(1 for k in range(n) if pred_cp[k] and not in_window[k])
        self.windows += len(windows)
        for name, (a_tp, a_fp, a_fn) in NAB_PROFILES.items():
            score = outside * a_fp
            for a, b in windows:
                first = next((k for k in range(a, b + 1) if pred_cp[k]), None)
                score += a_fn if first is None else _scale(first - a, b - a + 1, a_tp, a_fp)
            self.raw[name] += score

    def normalised(self) -> dict[str, float]:
        """``100 * (S - S_null) / (S_perfect - S_null)`` per profile."""
        out = {}
        for name, (a_tp, _a_fp, a_fn) in NAB_PROFILES.items():
            null = a_fn * self.windows
            perfect = a_tp * self.windows
            out[name] = 100.0 * (self.raw[name] - null) / (perfect - null) if self.windows else 0.0
        return out
