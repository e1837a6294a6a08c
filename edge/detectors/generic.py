"""Detectors every kind can use: out of range, stuck sensor, offline, sudden rate of change."""

from __future__ import annotations

from typing import Any

from device_profiles.messages import Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import DetectorConfigError, Finding, MonitorBase, register
from edge.detectors.common import (
    Episode,
    Params,
    condition_from,
    event_type,
    numeric_fields,
    shared,
)


class OutOfRange(MonitorBase):
    """Raises when any watched field leaves its profile band ``[warn_low, warn_high]``.

    The clear band is narrower by ``clear_margin`` (a fraction of the band width, or of the
    bound itself for one-sided bands), so a value sitting on the bound cannot flap.
    Fields without bounds are ignored; a missing (optional) field is neither in nor out.
    """

    __slots__ = ("_bounds", "_dirty", "_rule")

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        margin = p.number("clear_margin", 0.02, lo=0, hi=0.5)
        bounds: list[tuple[str, float, float, float, float]] = []
        for name in numeric_fields(profile, spec):
            f = profile.fields[name]
            if f.warn_low is None and f.warn_high is None:
                continue
            lo = f.warn_low if f.warn_low is not None else float("-inf")
            hi = f.warn_high if f.warn_high is not None else float("inf")
            if f.warn_low is not None and f.warn_high is not None:
                m = margin * (hi - lo)
            else:
                m = margin * abs(hi if f.warn_high is not None else lo)
            bounds.append((name, lo, hi, lo + m, hi - m))
        self._bounds = shared(tuple(bounds))
        if spec.fields and not self._bounds:
            raise DetectorConfigError(
                f"out_of_range: none of {', '.join(spec.fields)} has warn_low/warn_high"
            )
        self._rule = condition_from(
            p, event_type(profile, spec, "out_of_range"), min_duration_s=0.0,
            clear_after_s=2 * profile.sampling_period,
        )
        p.done()
        self._dirty = False

    def observe(self, reading: Reading) -> list[Finding]:
        values = reading.values
        out: dict[str, Any] | None = None
        inside_clear = True
        for name, lo, hi, clo, chi in self._bounds:
            v = values.get(name)
            if v is None or clo <= v <= chi:
                continue
            inside_clear = False
            if v < lo or v > hi:
                if out is None:
                    out = {}
                out[name] = {"value": v, "warn_low": lo, "warn_high": hi}
        if out:
            self._dirty = True
            return self._rule.update(reading.ts, True, {"fields": out})
        if self._rule.episode.active:
            return self._rule.update(reading.ts, False) if inside_clear else []
        if self._dirty:
            self._dirty = False
            return self._rule.update(reading.ts, False)
        return []


class StuckSensor(MonitorBase):
    """Raises when a field repeats the same value for ``window`` consecutive samples.

    ``tolerance`` is the largest change still counted as "the same"; ``ignore_value`` is a
    value that is legitimately constant (a door timer at 0 while closed); ``only_when``
    names a boolean field: samples taken while it is 0 neither count nor break a run (a
    load cell is constant while the car stands still). Clears when the value moves.
    """

    __slots__ = (
        "_episode",
        "_fields",
        "_ignore",
        "_last",
        "_only_when",
        "_run",
        "_stuck",
        "_tol",
        "_window",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._window = p.integer("window", 120, lo=2)
        self._tol = p.number("tolerance", 0.0, lo=0)
        self._ignore = p.optional_number("ignore_value")
        self._only_when = p.text("only_when", None)
        if self._only_when is not None and self._only_when not in profile.fields:
            raise DetectorConfigError(
                f"stuck_sensor: only_when names unknown field {self._only_when!r}"
            )
        p.done()
        self._fields = shared(numeric_fields(profile, spec))
        self._last: list[float | None] = [None] * len(self._fields)
        """Each field's last value (by position in ``_fields``)."""
        self._run = [0] * len(self._fields)
        """Each field's run of equal values."""
        self._stuck = 0
        """Bit ``i`` set while field ``i`` is stuck."""
        self._episode = Episode(event_type(profile, spec, "sensor_stuck"))

    def observe(self, reading: Reading) -> list[Finding]:
        values = reading.values
        if self._only_when is not None and not values.get(self._only_when):
            return []
        last, run, tol, ignore, window = (
            self._last, self._run, self._tol, self._ignore, self._window
        )
        stuck = self._stuck
        i = -1
        for name in self._fields:
            i += 1
            v = values.get(name)
            if v is None:
                continue
            prev = last[i]
            last[i] = v
            if prev is None or abs(v - prev) > tol or v == ignore:
                run[i] = 1
                if stuck:
                    stuck &= ~(1 << i)
                continue
            n = run[i] + 1
            run[i] = n
            if n >= window:
                stuck |= 1 << i
        self._stuck = stuck
        episode = self._episode
        if stuck:
            if episode.active:
                return []
            fields = {
                name: {"value": last[i], "samples": run[i]}
                for i, name in enumerate(self._fields) if stuck >> i & 1
            }
            return episode.raise_(reading.ts, {"fields": fields})
        if episode.active:
            return episode.clear(reading.ts)
        return []


class Offline(MonitorBase):
    """No message for the profile's ``offline_after`` seconds, or an ``offline`` status.

    The episode starts at ``last message + offline_after`` (a data time, so a replay names
    the same episode); an ``offline`` status raises at once with the status's timestamp. A
    telemetry reading clears it; an ``online`` status only restarts the silence clock.
    Before the first message the clock starts at the first tick.

    Silence is measured on the tick clock (the agent's), not by comparing it with the data
    timestamps: at the first tick after a message, when the message's timestamp is ahead of
    the tick clock (a device clock running fast, an accelerated simulator) or behind it by
    more than ``offline_after`` (a backlog drained after an outage, buffered history, a lagging
    agent), the silence clock restarts at that tick instead. Otherwise every device of a
    site would flip offline and back while a backlog drains.
    """

    __slots__ = ("_after", "_episode", "_fresh", "_heard", "_last")

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._after = p.number("offline_after_s", profile.offline_after, lo=0.001)
        p.done()
        self._last: float | None = None
        self._heard: float | None = None
        """Tick-clock time the silence is measured from."""
        self._fresh = False
        self._episode = Episode(event_type(profile, spec, "offline"))

    def _saw(self, ts: float) -> None:
        if self._last is None or ts > self._last:
            self._last = ts
        self._fresh = True

    def observe(self, reading: Reading) -> list[Finding]:
        ts = reading.ts  # _saw, inlined: this runs for every reading
        last = self._last
        if last is None or ts > last:
            self._last = ts
        self._fresh = True
        if not self._episode.active:
            return []
        return self._episode.clear(ts)

    def tick(self, now: float) -> list[Finding]:
        if self._last is None:
            self._last = self._heard = now
            return []
        if self._fresh or self._heard is None:
            self._fresh = False
            lag = now - self._last
            self._heard = self._last if 0.0 <= lag < self._after else now
        silent = now - self._heard
        if silent >= self._after:
            start = self._last + self._after
            return self._episode.raise_(
                now, {"last_seen": self._last, "silent_s": silent}, start=start
            )
        return []

    def on_status(self, ts: float, online: bool) -> list[Finding]:
        if online:
            self._saw(ts)
            return []
        return self._episode.raise_(ts, {"status": "offline", "last_seen": self._last})


class RateOfChange(MonitorBase):
    """A field changes faster than ``max_rate_per_s[field]`` between consecutive samples.

    Gaps longer than ``max_gap_s`` (default 5 sampling periods) are not compared. The
    episode clears after ``clear_after_s`` (default 60 s) without a violation.
    """

    __slots__ = ("_limits", "_max_gap", "_prev_ts", "_prev_v", "_rule")

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        fields = numeric_fields(profile, spec)
        self._limits = shared(tuple(p.number_map("max_rate_per_s", fields).items()))
        if not self._limits:
            raise DetectorConfigError("rate_of_change needs max_rate_per_s for at least one field")
        self._max_gap = p.number("max_gap_s", 5 * profile.sampling_period, lo=0.001)
        self._rule = condition_from(
            p, event_type(profile, spec, "sudden_change"), clear_after_s=60.0
        )
        p.done()
        self._prev_ts: list[float | None] = [None] * len(self._limits)
        """Each limited field's last timestamp, by position in ``_limits``."""
        self._prev_v = [0.0] * len(self._limits)
        """Each limited field's last value (meaningful once its timestamp is set)."""

    def observe(self, reading: Reading) -> list[Finding]:
        ts = reading.ts
        values = reading.values
        prev_ts, prev_v, max_gap = self._prev_ts, self._prev_v, self._max_gap
        hits: dict[str, Any] | None = None
        for i, (name, limit) in enumerate(self._limits):
            v = values.get(name)
            if v is None:
                continue
            t0 = prev_ts[i]
            v0 = prev_v[i]
            prev_ts[i] = ts
            prev_v[i] = v
            if t0 is None:
                continue
            dt = ts - t0
            if dt <= 0 or dt > max_gap:
                continue
            rate = abs(v - v0) / dt
            if rate > limit:
                if hits is None:
                    hits = {}
                hits[name] = {"from": v0, "to": v, "rate_per_s": rate, "limit": limit}
        rule = self._rule
        step = rule.step(ts, hits is not None)
        if step is None:
            return []
        return rule.emit(step, ts, {"fields": hits} if hits else None)


register("out_of_range")(OutOfRange)
register("stuck_sensor")(StuckSensor)
register("offline")(Offline)
register("rate_of_change")(RateOfChange)
