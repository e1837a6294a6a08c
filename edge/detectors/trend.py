"""Linear wear trend with a forecast of the hours left until the profile's ``limit``.

For each watched field with a ``limit`` the detector keeps the samples of the last
``window`` seconds and the running sums of an ordinary least-squares line through them
(O(1) per sample: add the new point, drop the expired ones). It raises when, for a field,

* the window holds at least ``min_points`` samples spanning at least half the window,
* the slope is at least ``min_slope_per_hour`` and statistically clear (t >= ``min_t``),
* the fitted line reaches the limit within ``horizon_hours``,

and has stayed so for ``min_duration_s`` (judged every ``every`` samples, default 10: a
trend over a window of hours does not change from one sample to the next). With
``only_when`` (a field) and ``only_when_min``, only samples taken in that operating state
count (a pump's bearing vibration means something only while it runs), after ``settle_s``
seconds in it.
``median_of`` (default 1) feeds the line the median of each block of that many samples, so
a start or stop transient of a few samples cannot tilt it (and the line costs less).

The finding carries a :class:`Forecast`: hours until the line reaches the limit, from the
line of the last ``forecast_window`` seconds (default: the whole window), so a window that
still holds the flat days before the wear began does not flatten the forecast; that recent
line must rise too (slope >= ``min_slope_per_hour``, t >= ``min_t`` / 2), so a step (a
fault that came and went) is not taken for wear. It clears
when the slope falls below half of ``min_slope_per_hour`` (or loses significance) for
``clear_after_s``.
"""

from __future__ import annotations

import math
from array import array

from device_profiles.messages import Forecast, Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import DetectorConfigError, Finding, MonitorBase, register
from edge.detectors.common import Episode, Hysteresis, Params, event_type, numeric_fields
from edge.detectors.compact import COMPACT_AT as _COMPACT_AT
from edge.detectors.compact import COMPACT_SHARE as _COMPACT_SHARE

_REBASE_H = 1000.0


class _LineSums:
    """The running sums of an ordinary least-squares line through ``(t, v)`` points."""

    __slots__ = ("n", "st", "stt", "stv", "sv", "svv")

    def __init__(self) -> None:
        self.n = 0
        self.st = self.sv = self.stt = self.stv = self.svv = 0.0

    def add(self, t: float, v: float, sign: float) -> None:
        self.n += int(sign)
        self.st += sign * t
        self.sv += sign * v
        self.stt += sign * t * t
        self.stv += sign * t * v
        self.svv += sign * v * v

    def fit(self, t_now: float) -> tuple[float, float, float] | None:
        """``(slope, fitted value at t_now, t-statistic)``, or ``None``."""
        n = self.n
        if n < 3:
            return None
        sxx = self.stt - self.st * self.st / n
        if sxx <= 1e-18:
            return None
        sxy = self.stv - self.st * self.sv / n
        syy = self.svv - self.sv * self.sv / n
        slope = sxy / sxx
        mean_t = self.st / n
        intercept = self.sv / n - slope * mean_t
        resid = max(syy - slope * sxy, 0.0)
        se = math.sqrt(resid / (n - 2) / sxx) if n > 2 else float("inf")
        tstat = abs(slope) / se if se > 0 else float("inf")
        return slope, intercept + slope * t_now, tstat


class LinearTrend:
    """Sliding-window least-squares line of ``value`` against time in hours.

    With ``recent_s`` shorter than the window, a second line through the samples of the
    last ``recent_s`` seconds is kept over the same samples (:meth:`fit_recent`). The
    samples live in two float64 arrays (16 bytes a sample) with a moving start; the expired
    prefix is dropped once it is at least a quarter of the arrays.
    """

    __slots__ = ("_all", "_recent", "_ref", "_rstart", "_start", "_t", "_v", "recent_h",
                 "window_h")

    def __init__(self, window_s: float, recent_s: float | None = None) -> None:
        self.window_h = window_s / 3600.0
        nested = recent_s is not None and recent_s < window_s
        self.recent_h = (recent_s if recent_s is not None and nested else window_s) / 3600.0
        self._all = _LineSums()
        self._recent = _LineSums() if nested else None
        self._t = array("d")
        self._v = array("d")
        self._start = 0
        """Index of the window's oldest sample in the arrays."""
        self._rstart = 0
        """Index of the recent line's oldest sample (never before ``_start``)."""
        self._ref: float | None = None

    def add(self, ts: float, v: float) -> None:
        """Add one sample at epoch seconds ``ts``; drop samples older than the window."""
        if self._ref is None:
            self._ref = ts
        t = (ts - self._ref) / 3600.0
        if t > _REBASE_H:
            self._rebase(ts)
            t = 0.0
        times, values = self._t, self._v
        times.append(t)
        values.append(v)
        line = self._all
        line.add(t, v, 1.0)
        horizon = t - self.window_h
        i = self._start
        while times[i] < horizon:
            line.add(times[i], values[i], -1.0)
            i += 1
        recent = self._recent
        if recent is not None:
            recent.add(t, v, 1.0)
            horizon = t - self.recent_h
            j = self._rstart
            while times[j] < horizon:
                recent.add(times[j], values[j], -1.0)
                j += 1
            self._rstart = j
        if i >= _COMPACT_AT and _COMPACT_SHARE * i >= len(times):
            del times[:i]
            del values[:i]
            self._rstart -= i
            i = 0
        self._start = i

    def _rebase(self, ts: float) -> None:
        assert self._ref is not None
        shift = (ts - self._ref) / 3600.0
        self._ref = ts
        s = self._start
        self._t = array("d", (t - shift for t in self._t[s:]))
        self._v = self._v[s:]
        self._rstart -= s
        self._start = 0
        self._all = _LineSums()
        for t, v in zip(self._t, self._v, strict=True):
            self._all.add(t, v, 1.0)
        if self._recent is not None:
            self._recent = _LineSums()
            r = self._rstart
            for t, v in zip(self._t[r:], self._v[r:], strict=True):
                self._recent.add(t, v, 1.0)

    @property
    def count(self) -> int:
        """Samples in the window."""
        return self._all.n

    @property
    def span_h(self) -> float:
        """Hours between the oldest and newest sample of the window."""
        return self._t[-1] - self._t[self._start] if self._all.n else 0.0

    @property
    def nested(self) -> bool:
        """Whether a shorter recent line is kept (``recent_s`` < window)."""
        return self._recent is not None

    def fit(self) -> tuple[float, float, float] | None:
        """``(slope per hour, fitted value at the newest sample, t-statistic)``, or ``None``."""
        return self._all.fit(self._t[-1]) if self._all.n else None

    def fit_recent(self) -> tuple[float, float, float] | None:
        """:meth:`fit` of the recent line (the whole window's without ``recent_s``)."""
        if self._recent is None:
            return self.fit()
        return self._recent.fit(self._t[-1]) if self._recent.n else None

    def nbytes(self) -> int:
        """Bytes of the stored samples, expired prefix included."""
        return 16 * len(self._t)


class Trend(MonitorBase):
    """Wear trend towards a field's ``limit`` with a forecast of the hours left."""

    __slots__ = (
        "_count",
        "_episode",
        "_every",
        "_gate",
        "_horizon",
        "_limits",
        "_lines",
        "_median_of",
        "_min_points",
        "_min_slope",
        "_min_t",
        "_only_min",
        "_only_when",
        "_recent",
        "_settle",
        "_state_since",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        window = p.number("window", 3600.0, lo=1.0)
        forecast_window = p.number("forecast_window", window, lo=1.0, hi=window)
        self._min_points = p.integer("min_points", 30, lo=3)
        self._min_slope = p.number("min_slope_per_hour", 0.0, lo=0.0)
        self._horizon = p.number("horizon_hours", 720.0, lo=0.0)
        self._min_t = p.number("min_t", 5.0, lo=0.0)
        self._only_when = p.text("only_when", None)
        self._only_min = p.number("only_when_min", 0.5)
        self._settle = p.number("settle_s", 0.0, lo=0.0)
        self._median_of = p.integer("median_of", 1, lo=1)
        self._every = p.integer("every", 10, lo=1)
        self._count = 0
        if self._only_when is not None and self._only_when not in profile.fields:
            raise DetectorConfigError(f"trend: only_when names unknown field {self._only_when!r}")
        self._gate = Hysteresis(
            1.0, 0.0,
            min_duration=p.number("min_duration_s", window / 4, lo=0),
            clear_duration=p.number("clear_after_s", window, lo=0),
            cooldown=p.number("cooldown_s", 0.0, lo=0),
        )
        p.done()
        self._limits: dict[str, float] = {}
        for name in numeric_fields(profile, spec):
            limit = profile.fields[name].limit
            if limit is not None:
                self._limits[name] = limit
        if not self._limits:
            raise DetectorConfigError("trend: none of the fields has a 'limit' to forecast against")
        self._lines = {name: LinearTrend(window, forecast_window) for name in self._limits}
        self._recent: dict[str, list[float]] = {name: [] for name in self._limits}
        self._state_since: float | None = None
        self._episode = Episode(event_type(profile, spec, "trend"))

    def _forecast(self) -> tuple[tuple[str, float, float, float] | None, bool]:
        """The soonest limit crossing ``(field, limit, hours, slope)``, and whether any
        field still trends (for clearing)."""
        best: tuple[str, float, float, float] | None = None
        trending = False
        for name, line in self._lines.items():
            if line.count < self._min_points or line.span_h < line.window_h / 2:
                continue
            fit = line.fit()
            if fit is None:
                continue
            slope, now_value, tstat = fit
            limit = self._limits[name]
            if slope >= self._min_slope / 2 and tstat >= self._min_t / 2 and slope > 0:
                trending = True
            if slope < self._min_slope or tstat < self._min_t or slope <= 0:
                continue
            if line.nested:
                recent = line.fit_recent()
                if recent is None or recent[0] < self._min_slope or recent[2] < self._min_t / 2:
                    continue
                slope, now_value = recent[0], recent[1]
            hours = max((limit - now_value) / slope, 0.0)
            if hours > self._horizon:
                continue
            if best is None or hours < best[2]:
                best = (name, limit, hours, slope)
        return best, trending

    def observe(self, reading: Reading) -> list[Finding]:
        ts = reading.ts
        if self._only_when is not None:
            gate_value = reading.values.get(self._only_when)
            if gate_value is None or gate_value < self._only_min:
                if self._state_since is not None:
                    for recent in self._recent.values():
                        recent.clear()
                self._state_since = None
                return []
            if self._state_since is None:
                self._state_since = ts
            if ts - self._state_since < self._settle:
                return []
        seen = False
        for name, line in self._lines.items():
            v = reading.values.get(name)
            if v is not None:
                block = self._recent[name]
                block.append(v)
                if len(block) < self._median_of:
                    continue
                value = sorted(block)[len(block) // 2] if len(block) > 1 else v
                block.clear()
                line.add(ts, value)
                seen = True
        if not seen:
            return []
        self._count += 1
        if self._count % self._every and not self._episode.active:
            return []
        best, trending = self._forecast()
        score = 1.0 if best is not None else (0.5 if trending else 0.0)
        step = self._gate.update(ts, score)
        if step == "raise" and best is not None:
            name, limit, hours, slope = best
            f = Forecast(field=name, limit=limit, hours_to_limit=hours, slope_per_hour=slope)
            evidence = {"field": name, "slope_per_hour": slope, "limit": limit}
            return self._episode.raise_(ts, evidence, f)
        if step == "clear":
            return self._episode.clear(ts)
        return []


register("trend")(Trend)
