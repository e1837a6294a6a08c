"""Score detectors (``learn_one`` / ``score_one``): the learned models behind the wrappers.

Both detectors learn "normal" from the first ``warmup`` samples they are taught, score 0.0
until then, and afterwards adapt slowly (exponential forgetting with ``adapt_rate``) to the
samples they are still taught: the thresholding wrapper only teaches samples it judged
normal. Scores are calibrated so that 1.0 is the edge of normal: the raw statistic divided by
the ``quantile`` of the same statistic over the warm-up samples, times ``margin``.

Each model fits once, with the sample that completes its warm-up, or, with a fit budget in
force (:mod:`edge.detectors.fit_budget`: the edge agent caps fitting at a share of its
runner), with the first sample after that for which the budget has time; until then it
scores 0 and takes no new samples, so the fitted model is the same either way.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import reduce
from itertools import repeat
from typing import TYPE_CHECKING, Protocol

from edge.detectors.base import DetectorConfigError
from edge.detectors.compact import RowBuffer
from edge.detectors.fit_budget import fit_within_budget
from edge.detectors.smallmat import inverse, quadratic, quantile

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

# numpy is imported by the methods that need it, not with the module: an agent loads it
# (about 20 MB resident) only once a learned model has finished its warm-up, and a site
# without learned models never does.


class _WarmingUp(Protocol):
    warmup: int
    _buf: RowBuffer | None


def _warm_up(model: _WarmingUp, row: Sequence[float], fit: Callable[[RowBuffer], None]) -> None:
    """Keep ``row`` while the model's warm-up is not complete; once it is, ``fit`` the
    warm-up when the fit budget allows (the rows that come meanwhile are not kept)."""
    buf = model._buf
    if buf is None:
        buf = model._buf = RowBuffer(len(row))
    if buf.rows < model.warmup:
        buf.append(row)
    if buf.rows >= model.warmup:
        fit_within_budget(model, lambda: fit(buf))


class GaussianScorer:
    """Multivariate normal model of all channels; Mahalanobis distance, smoothed.

    The raw statistic is the squared Mahalanobis distance of the standardised sample under
    a shrunk covariance (``shrinkage`` towards the identity keeps it invertible when a
    channel is nearly constant), averaged over the last ``smooth`` samples (faults of a pump
    last seconds to hours; single-sample spikes are noise). Each sample's contribution is
    capped at ``cap`` times the calibrated edge of normal, so one wild sample (a pump
    coasting down through the operating-state threshold) cannot raise an alarm alone.
    Channels missing from more than 10 % of the warm-up samples (a pump without a flow
    meter) are left out of the model; other missing values are imputed with the mean.
    """

    def __init__(
        self,
        fields: Sequence[str],
        *,
        warmup: int = 400,
        smooth: int = 20,
        quantile: float = 0.99,
        margin: float = 1.5,
        shrinkage: float = 0.1,
        adapt_rate: float = 0.0005,
        refresh_every: int = 50,
        cap: float = 2.0,
    ) -> None:
        if not fields:
            raise DetectorConfigError("GaussianScorer needs at least one field")
        if cap <= 0:
            raise DetectorConfigError("GaussianScorer: cap must be positive")
        if warmup < 10 or smooth < 1 or not 0.5 <= quantile <= 1.0 or margin <= 0:
            raise DetectorConfigError(
                "GaussianScorer: warmup >= 10, smooth >= 1, 0.5 <= quantile <= 1, margin > 0"
            )
        if not 0.0 <= shrinkage < 1.0 or not 0.0 <= adapt_rate < 1.0 or refresh_every < 1:
            raise DetectorConfigError(
                "GaussianScorer: 0 <= shrinkage < 1, 0 <= adapt_rate < 1, refresh_every >= 1"
            )
        self.fields = tuple(fields)
        self.warmup = warmup
        self.smooth = smooth
        self.quantile = quantile
        self.margin = margin
        self.shrinkage = shrinkage
        self.adapt_rate = adapt_rate
        self.refresh_every = refresh_every
        self.cap = cap
        self._buf: RowBuffer | None = None
        """The warm-up samples (compact float32 rows), until the model is fitted."""
        self._mean: FloatArray | None = None
        self._cov: FloatArray | None = None
        self._prec: FloatArray | None = None
        self._scale = 1.0
        self._ring = [0.0] * smooth
        self._ring_i = 0
        self._ring_n = 0
        self._ring_sum = 0.0
        self._learned = 0
        self._used: tuple[str, ...] = self.fields

    @property
    def ready(self) -> bool:
        """Whether the warm-up is over and scores are meaningful."""
        return self._prec is not None

    @property
    def used_fields(self) -> tuple[str, ...]:
        """The fields the model uses: those present in at least 90 % of the warm-up."""
        return self._used

    def _vector(self, x: Mapping[str, float]) -> list[float]:
        mean = self._mean
        out = []
        for i, name in enumerate(self._used):
            v = x.get(name)
            if v is None or v != v:
                v = float(mean[i]) if mean is not None else math.nan
            out.append(v)
        return out

    def _fit(self, buf: RowBuffer) -> None:
        import numpy as np

        data = buf.matrix()
        self._buf = None
        present = ~np.isnan(data)
        keep = present.mean(axis=0) >= 0.9
        if not keep.any():
            return
        data = data[:, keep]
        self._used = tuple(n for n, k in zip(self._used, keep, strict=True) if k)
        col_mean = np.nanmean(data, axis=0)
        data = np.where(np.isnan(data), col_mean, data)
        mean = data.mean(axis=0)
        cov = np.cov(data, rowvar=False).reshape(len(self._used), len(self._used))
        self._mean = mean
        self._cov = cov
        self._refresh()
        assert self._prec is not None
        diff = data - mean
        d2 = np.einsum("ij,jk,ik->i", diff, self._prec, diff)
        k = min(self.smooth, len(d2))
        smoothed = np.convolve(d2, np.ones(k) / k, mode="valid")
        q = float(np.quantile(smoothed, self.quantile))
        self._scale = max(q, 1e-9) * self.margin

    def _refresh(self) -> None:
        import numpy as np

        assert self._cov is not None
        cov = self._cov
        std = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
        corr = cov / np.outer(std, std)
        shrunk = (1.0 - self.shrinkage) * corr + self.shrinkage * np.eye(len(std))
        inv_corr = np.linalg.inv(shrunk)
        self._prec = inv_corr / np.outer(std, std)

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Collect warm-up samples, then adapt mean and covariance slowly."""
        v = self._vector(x)
        if self._prec is None:
            _warm_up(self, v, self._fit)
            return
        if self.adapt_rate <= 0.0:
            return
        import numpy as np

        assert self._mean is not None and self._cov is not None
        a = self.adapt_rate
        diff = np.asarray(v) - self._mean
        self._mean += a * diff
        self._cov = (1.0 - a) * self._cov + a * np.outer(diff, diff)
        self._learned += 1
        if self._learned % self.refresh_every == 0:
            self._refresh()

    def reset_window(self) -> None:
        """Forget the samples being smoothed (the model itself is kept)."""
        self._ring = [0.0] * self.smooth
        self._ring_i = 0
        self._ring_n = 0
        self._ring_sum = 0.0

    def score_one(self, x: Mapping[str, float]) -> float:
        """Smoothed squared Mahalanobis distance over the calibrated edge of normal."""
        if self._prec is None or self._mean is None:
            return 0.0
        import numpy as np

        diff = np.asarray(self._vector(x)) - self._mean
        d2 = float(diff @ self._prec @ diff)
        if not math.isfinite(d2) or d2 > self.cap * self._scale:
            d2 = self.cap * self._scale
        old = self._ring[self._ring_i]
        self._ring[self._ring_i] = d2
        self._ring_i = (self._ring_i + 1) % self.smooth
        if self._ring_n < self.smooth:
            self._ring_n += 1
            old = 0.0
        self._ring_sum += d2 - old
        return max(self._ring_sum, 0.0) / self._ring_n / self._scale


class ZScorer:
    """Univariate (or worst-of-several-fields) standard score against learned mean and spread.

    Mean and variance come from the warm-up samples, then follow exponentially weighted
    updates with ``adapt_rate``. The raw statistic is the largest ``|x - mean| / std`` over
    the fields, averaged over ``smooth`` samples, calibrated like :class:`GaussianScorer`.
    """

    def __init__(
        self,
        fields: Sequence[str],
        *,
        warmup: int = 100,
        smooth: int = 5,
        quantile: float = 0.99,
        margin: float = 1.5,
        adapt_rate: float = 0.001,
    ) -> None:
        if not fields or warmup < 3 or smooth < 1 or margin <= 0 or not 0.5 <= quantile <= 1:
            raise DetectorConfigError(
                "ZScorer: fields, warmup >= 3, smooth >= 1, 0.5 <= quantile <= 1, margin > 0"
            )
        self.fields = tuple(fields)
        self.warmup = warmup
        self.smooth = smooth
        self.quantile = quantile
        self.margin = margin
        self.adapt_rate = adapt_rate
        self._buf: RowBuffer | None = None
        self._mean: list[float] = []
        self._var: list[float] = []
        self._scale = 1.0
        self._recent: list[float] = []

    def _z(self, x: Mapping[str, float]) -> float:
        worst = 0.0
        for i, name in enumerate(self.fields):
            v = x.get(name)
            if v is None or v != v:
                continue
            z = abs(v - self._mean[i]) / math.sqrt(self._var[i])
            worst = max(worst, z)
        return worst

    def _fit(self, buf: RowBuffer) -> None:
        import numpy as np

        data = buf.matrix()
        self._buf = None
        self._mean = [float(m) for m in np.nanmean(data, axis=0)]
        self._var = [max(float(v), 1e-12) for v in np.nanvar(data, axis=0)]
        self._mean = [0.0 if m != m else m for m in self._mean]
        z = np.nanmax(np.abs(data - self._mean) / np.sqrt(self._var), axis=1)
        z = np.nan_to_num(z)
        k = min(self.smooth, len(z))
        sm = np.convolve(z, np.ones(k) / k, mode="valid")
        self._scale = max(float(np.quantile(sm, self.quantile)), 1e-9) * self.margin

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Collect warm-up samples, then follow the mean and variance slowly."""
        if not self._mean:
            _warm_up(self, [x.get(n, math.nan) for n in self.fields], self._fit)
            return
        a = self.adapt_rate
        for i, name in enumerate(self.fields):
            v = x.get(name)
            if v is None or v != v:
                continue
            d = v - self._mean[i]
            self._mean[i] += a * d
            self._var[i] = max((1 - a) * self._var[i] + a * d * d, 1e-12)

    def score_one(self, x: Mapping[str, float]) -> float:
        """Smoothed worst standard score over the calibrated edge of normal."""
        if not self._mean:
            return 0.0
        self._recent.append(self._z(x))
        if len(self._recent) > self.smooth:
            del self._recent[0]
        return sum(self._recent) / len(self._recent) / self._scale


class MewmaScorer:
    """Multivariate EWMA chart: Hotelling's T² of the smoothed, standardised sample vector.

    Why not :class:`GaussianScorer`: a pump fault on the testbed mostly shifts the *mean*
    of one or two channels (flow drops by 3-4 standard deviations when a valve closes)
    while every channel stays noisy. Averaging per-sample Mahalanobis distances keeps the
    noise of all channels in the statistic; smoothing the vector first (exponential
    weights, ``span`` samples, alpha = 2 / (span + 1)) and then measuring its distance
    removes most of that noise, so a small sustained shift stands out sooner and longer.

    Learning: the first ``warmup`` samples fix each channel's mean and spread (standard
    scores are clipped at ``clip`` so one wild sample moves the smoothed vector by a
    bounded amount), then the mean and the shrunk (``shrinkage`` towards the identity)
    correlation of the *smoothed* vectors over the warm-up, leaving out its first ``span``
    samples while the smoothing fills. The edge of normal (score 1.0) is ``margin`` times
    the ``quantile`` of the warm-up's smoothed statistic. Afterwards, with
    ``adapt_rate`` > 0, the channel means and the smoothed vectors' covariance follow the
    samples the wrapper still teaches (those it judged normal), with exponential
    forgetting. Channels missing from more than 10 % of the warm-up are left out; other
    missing values count as the mean (no deviation). O(d²) per sample for d channels.
    """

    def __init__(
        self,
        fields: Sequence[str],
        *,
        warmup: int = 400,
        span: int = 10,
        quantile: float = 1.0,
        margin: float = 3.0,
        shrinkage: float = 0.1,
        adapt_rate: float = 0.0,
        clip: float = 10.0,
        refresh_every: int = 50,
    ) -> None:
        if not fields:
            raise DetectorConfigError("MewmaScorer needs at least one field")
        if warmup < 10 or span < 1 or warmup <= span:
            raise DetectorConfigError("MewmaScorer: warmup >= 10, span >= 1, warmup > span")
        if not 0.5 <= quantile <= 1.0 or margin <= 0 or clip <= 0:
            raise DetectorConfigError("MewmaScorer: 0.5 <= quantile <= 1, margin > 0, clip > 0")
        if not 0.0 <= shrinkage < 1.0 or not 0.0 <= adapt_rate < 1.0 or refresh_every < 1:
            raise DetectorConfigError(
                "MewmaScorer: 0 <= shrinkage < 1, 0 <= adapt_rate < 1, refresh_every >= 1"
            )
        self.fields = tuple(fields)
        self.warmup = warmup
        self.span = span
        self.alpha = 2.0 / (span + 1.0)
        self.quantile = quantile
        self.margin = margin
        self.shrinkage = shrinkage
        self.adapt_rate = adapt_rate
        self.clip = clip
        self.refresh_every = refresh_every
        self._used: tuple[str, ...] = self.fields
        self._buf: RowBuffer | None = None
        """The warm-up samples (compact float32 rows), until the model is fitted."""
        # Plain float lists, not numpy: six channels are cheaper in Python than numpy's
        # per-call overhead, and the agent then never imports numpy (about 28 MB).
        self._mean_list: list[float] = []
        self._std_list: list[float] = []
        self._centre: list[float] | None = None
        self._cov: list[list[float]] | None = None
        self._prec: list[list[float]] | None = None
        self._state: list[float] | None = None
        self._scale = 1.0
        self._learned = 0

    @property
    def ready(self) -> bool:
        """Whether the warm-up is over and scores are meaningful."""
        return self._prec is not None

    @property
    def used_fields(self) -> tuple[str, ...]:
        """The fields the model uses: those present in at least 90 % of the warm-up."""
        return self._used

    def _raw(self, x: Mapping[str, float]) -> list[float]:
        out = []
        for name in self._used:
            v = x.get(name)
            out.append(math.nan if v is None or v != v else float(v))
        return out

    def _standard(self, x: Mapping[str, float]) -> list[float]:
        """The standard scores of a sample (missing or infinite: 0), clipped at ``clip``."""
        clip = self.clip
        out = []
        for name, m, s in zip(self._used, self._mean_list, self._std_list, strict=True):
            v = x.get(name)
            if v is None:
                out.append(0.0)
                continue
            z = (float(v) - m) / s
            if not math.isfinite(z):
                z = 0.0
            elif z > clip:
                z = clip
            elif z < -clip:
                z = -clip
            out.append(z)
        return out

    def _fit(self, buf: RowBuffer) -> None:
        """Learn the channels' means and spreads, the smoothed vectors' centre and precision,
        and the calibration, from the warm-up samples.

        Column by column, with the per-value loops that must run in order (the smoothing)
        in Python and the rest as ``map`` over whole columns: a 3,600-sample warm-up of six
        channels fits in half the time of the row-by-row loops (45 instead of 96 ms on the
        busy 2-core test box). Every value is computed with the same operations, in the same
        order, as row-by-row means, covariance and ``smallmat.quadratic``, so the result is
        the same to the last bit (``tests/test_detect_mewma.py`` checks it against those
        row-by-row definitions).
        """
        columns = buf.columns()
        self._buf = None
        n = len(columns[0]) if columns else 0
        if n <= self.span:  # the spilled rows were lost: too few left, warm up again
            return
        cols = [j for j, col in enumerate(columns) if (n - sum(map(math.isnan, col))) / n >= 0.9]
        if not cols:
            return
        self._used = tuple(self._used[j] for j in cols)
        d = len(cols)
        clip, alpha, span = self.clip, self.alpha, self.span
        mean, std, state = [], [], []
        settled: list[list[float]] = []
        for j in cols:
            col = columns[j]
            vals = [v for v in col if v == v]  # nanmean, nanvar (ddof 0)
            m = math.fsum(vals) / len(vals)
            var = math.fsum([(v - m) * (v - m) for v in vals]) / len(vals)
            sd = math.sqrt(max(var, 1e-12))
            smoothed = []
            st = 0.0
            for v in col:  # standard score (missing: 0), clipped, smoothed
                z = (v - m) / sd
                if z != z:
                    z = 0.0
                elif z > clip:
                    z = clip
                elif z < -clip:
                    z = -clip
                st += alpha * (z - st)
                smoothed.append(st)
            mean.append(m)
            std.append(sd)
            state.append(st)
            settled.append(smoothed[span:])
        rows = len(settled[0])
        centre = [reduce(operator.add, col, 0.0) / rows for col in settled]
        diffs = [[v - c for v in col] for col, c in zip(settled, centre, strict=True)]
        dof = max(1, rows - 1)
        cov = [[0.0] * d for _ in range(d)]
        for i in range(d):
            for j in range(i, d):
                cov[i][j] = cov[j][i] = (
                    reduce(operator.add, map(operator.mul, diffs[i], diffs[j]), 0.0) / dof
                )
        self._mean_list, self._std_list = mean, std
        self._centre, self._cov = centre, cov
        self._refresh()
        assert self._prec is not None
        prec = self._prec
        total: Iterable[float] = repeat(0.0, rows)
        for j in range(d):  # quadratic(diff, prec) of every settled vector at once
            s: Iterable[float] = repeat(0.0, rows)
            for i in range(d):
                s = map(operator.add, s, map(operator.mul, diffs[i], repeat(prec[i][j])))
            total = map(operator.add, total, map(operator.mul, s, diffs[j]))
        self._scale = max(quantile(list(total), self.quantile), 1e-9) * self.margin
        self._state = state

    def _refresh(self) -> None:
        """The precision matrix: the covariance as a correlation shrunk towards the identity,
        inverted, and scaled back."""
        assert self._cov is not None
        cov = self._cov
        d = len(cov)
        std = [math.sqrt(max(cov[i][i], 1e-12)) for i in range(d)]
        keep = 1.0 - self.shrinkage
        shrunk = [
            [keep * (cov[i][j] / (std[i] * std[j])) + (self.shrinkage if i == j else 0.0)
             for j in range(d)]
            for i in range(d)
        ]
        inv = inverse(shrunk)
        self._prec = [[inv[i][j] / (std[i] * std[j]) for j in range(d)] for i in range(d)]

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Collect warm-up samples, then (with ``adapt_rate``) follow normal slowly."""
        if self._prec is None:
            _warm_up(self, self._raw(x), self._fit)
            return
        if self.adapt_rate <= 0.0 or self._state is None:
            return
        assert self._centre is not None and self._cov is not None
        a = self.adapt_rate
        mean = self._mean_list
        for k, v in enumerate(self._raw(x)):
            if math.isfinite(v):
                mean[k] += a * (v - mean[k])
        diff = [s - c for s, c in zip(self._state, self._centre, strict=True)]
        keep = 1.0 - a
        self._cov = [
            [keep * cij + a * (di * dj) for cij, dj in zip(row, diff, strict=True)]
            for row, di in zip(self._cov, diff, strict=True)
        ]
        self._learned += 1
        if self._learned % self.refresh_every == 0:
            self._refresh()

    def reset_window(self) -> None:
        """Restart the smoothing from the learned normal (the model itself is kept)."""
        if self._centre is not None:
            self._state = list(self._centre)

    def score_one(self, x: Mapping[str, float]) -> float:
        """T² of the smoothed standardised vector over the calibrated edge of normal."""
        state, centre, prec = self._state, self._centre, self._prec
        if prec is None or state is None or centre is None:
            return 0.0
        alpha = self.alpha
        for k, z in enumerate(self._standard(x)):
            state[k] += alpha * (z - state[k])
        diff = [s - c for s, c in zip(state, centre, strict=True)]
        return quadratic(diff, prec) / self._scale
