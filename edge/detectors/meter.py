"""Smart meters: consumption against the meter's own baseline and plan, and power quality.

Times of day are local: ``utc_offset_h`` (a param of each detector, default 0) shifts the
epoch timestamps before hours, nights and days are cut.
"""

from __future__ import annotations

import math
from typing import Any

from device_profiles.messages import Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import DetectorConfigError, Finding, MonitorBase, register
from edge.detectors.common import (
    ConditionMonitor,
    Episode,
    Hysteresis,
    Params,
    condition_from,
    event_type,
    rule_event,
)
from edge.detectors.compact import SlotMeans

_WEEK_H = 168
# 1970-01-01 was a Thursday; shift so that slot 0 is Monday 00:00.
_EPOCH_WEEKDAY_SHIFT_H = 3 * 24


def hour_of_week(ts: float, utc_offset_h: float = 0.0) -> int:
    """0..167, Monday 00:00-01:00 local time is 0."""
    hours = math.floor(ts / 3600.0 + utc_offset_h) + _EPOCH_WEEKDAY_SHIFT_H
    return hours % _WEEK_H


def local_day(ts: float, utc_offset_h: float = 0.0) -> int:
    """Days since the epoch, local time."""
    return math.floor((ts / 3600.0 + utc_offset_h) / 24.0)


def is_weekend_day(day: int) -> bool:
    """Whether local day number ``day`` (days since the epoch) is a Saturday or Sunday."""
    return (day + 3) % 7 >= 5


class _SlotMean:
    """Running mean of one baseline slot (plain mean, then exponential after ``cap``)."""

    __slots__ = ("n", "value")

    def __init__(self) -> None:
        self.n = 0
        self.value = 0.0

    def add(self, v: float, cap: int) -> None:
        self.n += 1
        self.value += (v - self.value) / min(self.n, cap)


class MeterBaseline(MonitorBase):
    """Energy spike: smoothed power above ``factor`` times this meter's hour-of-week normal.

    Power is smoothed with an exponential mean of time constant ``smooth_s``. The baseline
    of each of the 168 hour-of-week slots is the mean of the normal samples seen in it, and
    is used once the slot has history from ``min_samples_per_slot`` earlier weeks; until
    then the hour-of-day slot of the same day type (weekday or weekend) is used once it has
    history from an earlier day (no detection on the first weekday nor the first weekend
    day). Samples above the spike level, and all samples of an open
    episode, are kept out of the baseline. A spike also needs ``min_excess_kw`` above the
    baseline and lasts ``min_duration_s`` (default 10 min) before it is raised.
    """

    __slots__ = (
        "_cap",
        "_day",
        "_dt",
        "_factor",
        "_field",
        "_last_ts",
        "_min_excess",
        "_min_weeks",
        "_offset",
        "_rule",
        "_smooth",
        "_smoothed",
        "_w",
        "_week",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._field = p.text("field", "power_kw") or "power_kw"
        if self._field not in profile.fields:
            raise DetectorConfigError(f"meter_baseline: unknown field {self._field!r}")
        self._factor = p.number("factor", 2.5, lo=1.0)
        self._min_excess = p.number("min_excess_kw", 1.0, lo=0.0)
        self._min_weeks = p.integer("min_samples_per_slot", 3, lo=1)
        self._smooth = p.number("smooth_s", 900.0, lo=0.0)
        self._offset = p.number("utc_offset_h", 0.0, lo=-14, hi=14)
        self._cap = p.integer("memory_samples", 2000, lo=1)
        self._rule = condition_from(
            p, event_type(profile, spec, "energy_spike"), min_duration_s=600.0,
            clear_after_s=900.0, cooldown_s=1800.0,
        )
        p.done()
        self._week = SlotMeans(_WEEK_H, self._cap)
        """Hour-of-week slots; their periods are weeks."""
        self._day = SlotMeans(48, self._cap)
        """Hour-of-day slots, weekdays then weekend days; their periods are days."""
        self._smoothed: float | None = None
        self._last_ts: float | None = None
        self._dt = math.nan
        """The last gap between samples, and the smoothing weight ``_w`` it gives."""
        self._w = 0.0

    @staticmethod
    def _day_slot(slot: int, day: int) -> int:
        return slot % 24 + (24 if is_weekend_day(day) else 0)

    def _baseline(self, slot: int, day: int) -> float | None:
        week = self._week
        if week.seen_before(slot, day // 7) >= self._min_weeks:
            return week.mean(slot)
        hour = self._day_slot(slot, day)
        if self._day.seen_before(hour, day) >= 1:
            return self._day.mean(hour)
        return None

    def observe(self, reading: Reading) -> list[Finding]:
        power = reading.values.get(self._field)
        if power is None:
            return []
        ts = reading.ts
        if self._smoothed is None or self._last_ts is None or self._smooth <= 0:
            self._smoothed = power
        else:
            dt = max(ts - self._last_ts, 0.0)
            if dt != self._dt:  # a steady sampling period needs one exp, not one a sample
                self._dt = dt
                self._w = 1.0 - math.exp(-dt / self._smooth)
            self._smoothed += self._w * (power - self._smoothed)
        self._last_ts = ts
        hours = ts / 3600.0 + self._offset  # hour_of_week and local_day, computed once
        slot = (math.floor(hours) + _EPOCH_WEEKDAY_SHIFT_H) % _WEEK_H
        day = math.floor(hours / 24.0)
        base = self._baseline(slot, day)
        out: list[Finding] = []
        high = False
        if base is not None:
            level = self._smoothed
            spike = level > self._factor * base and level - base >= self._min_excess
            high = power > self._factor * base and power - base >= self._min_excess
            step = self._rule.step(ts, spike)
            if step is not None:
                evidence: dict[str, Any] = {
                    "power_kw": power, "smoothed_kw": level, "baseline_kw": base,
                    "factor": self._factor, "hour_of_week": slot,
                }
                out = self._rule.emit(step, ts, evidence)
        if not high and not self._rule.episode.active:
            self._week.add(slot, power, day // 7)
            self._day.add(self._day_slot(slot, day), power, day)
        return out


class MeterNightLoad(MonitorBase):
    """Night base load of a common area above ``max_ratio_to_baseline`` of its usual.

    Each night (``night_start_hour`` to ``night_end_hour`` local) the mean power is taken;
    when the night ends it is compared with the mean of previous normal nights (after
    ``min_nights``). Raised at the end of an abnormal night, cleared at the end of a normal
    one. Only meters whose device params say ``common_area: true`` are watched unless
    ``only_common_area`` is false.
    """

    __slots__ = (
        "_baseline",
        "_enabled",
        "_end_h",
        "_episode",
        "_field",
        "_min_excess",
        "_min_nights",
        "_n",
        "_night",
        "_offset",
        "_ratio",
        "_start_h",
        "_sum",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._start_h = p.number("night_start_hour", 1.0, lo=0, hi=24)
        self._end_h = p.number("night_end_hour", 5.0, lo=0, hi=24)
        self._ratio = p.number("max_ratio_to_baseline", 1.5, lo=1.0)
        self._min_nights = p.integer("min_nights", 2, lo=1)
        self._min_excess = p.number("min_excess_kw", 0.1, lo=0.0)
        self._offset = p.number("utc_offset_h", 0.0, lo=-14, hi=14)
        self._field = p.text("field", "power_kw") or "power_kw"
        only_common = p.flag("only_common_area", True)
        p.done()
        self._enabled = not only_common or bool(device.params.get("common_area", False))
        self._episode = Episode(event_type(profile, spec, "night_base_load"))
        self._night: int | None = None
        self._sum = 0.0
        self._n = 0
        self._baseline = _SlotMean()

    def _night_of(self, ts: float) -> int | None:
        local_h = (ts / 3600.0 + self._offset) % 24.0
        start, end = self._start_h, self._end_h
        inside = start <= local_h < end if start < end else (local_h >= start or local_h < end)
        if not inside:
            return None
        day = local_day(ts, self._offset)
        return day - 1 if start > end and local_h < end else day

    def observe(self, reading: Reading) -> list[Finding]:
        if not self._enabled:
            return []
        power = reading.values.get(self._field)
        if power is None:
            return []
        night = self._night_of(reading.ts)
        out: list[Finding] = []
        if self._night is not None and night != self._night:
            out = self._close_night(reading.ts)
        if night is not None:
            if night != self._night:
                self._night, self._sum, self._n = night, 0.0, 0
            self._sum += power
            self._n += 1
        return out

    def _close_night(self, ts: float) -> list[Finding]:
        mean = self._sum / self._n if self._n else None
        self._night, self._sum, self._n = None, 0.0, 0
        if mean is None:
            return []
        base = self._baseline.value
        if self._baseline.n < self._min_nights:
            self._baseline.add(mean, 30)
            return []
        evidence = {"night_mean_kw": mean, "baseline_kw": base, "ratio_limit": self._ratio}
        if mean > self._ratio * base and mean - base >= self._min_excess:
            return self._episode.raise_(ts, evidence)
        self._baseline.add(mean, 30)
        return self._episode.clear(ts, evidence)


class MeterPlan(MonitorBase):
    """A day's consumption deviates from plan by more than ``tolerance`` (15 %).

    The plan is the device's ``daily_plan_kwh`` param (site file) or this detector's
    ``plan_kwh_per_day``; without either, the mean of the previous ``min_days`` or more
    complete normal days of the same type (weekdays and weekend days are learned apart).
    A day's consumption is the rise of the ``energy_kwh`` register over
    the local day; days covered less than ``min_coverage`` (a register reset, the first
    partial day) are skipped. Decided at the first reading of the next day.
    """

    __slots__ = (
        "_closing",
        "_coverage",
        "_day",
        "_episode",
        "_first",
        "_last",
        "_learned",
        "_min_days",
        "_offset",
        "_plan",
        "_tolerance",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._tolerance = p.number("tolerance", 0.15, lo=0.0)
        self._offset = p.number("utc_offset_h", 0.0, lo=-14, hi=14)
        self._min_days = p.integer("min_days", 3, lo=1)
        self._coverage = p.number("min_coverage", 0.9, lo=0.0, hi=1.0)
        plan = p.optional_number("plan_kwh_per_day")
        p.done()
        device_plan = device.params.get("daily_plan_kwh")
        if device_plan is not None:
            if isinstance(device_plan, bool) or not isinstance(device_plan, int | float):
                raise DetectorConfigError("device param daily_plan_kwh must be a number")
            plan = float(device_plan)
        self._plan = plan
        self._episode = Episode(event_type(profile, spec, "plan_deviation"))
        self._day: int | None = None
        self._closing = 0
        self._first: tuple[float, float] | None = None
        self._last: tuple[float, float] | None = None
        self._learned = {False: _SlotMean(), True: _SlotMean()}

    def observe(self, reading: Reading) -> list[Finding]:
        energy = reading.values.get("energy_kwh")
        if energy is None:
            return []
        ts = reading.ts
        day = local_day(ts, self._offset)
        out: list[Finding] = []
        if self._day is not None and day != self._day:
            self._closing = self._day
            out = self._close_day(ts)
        if day != self._day:
            self._day = day
            self._first = (ts, energy)
        self._last = (ts, energy)
        return out

    def _close_day(self, ts: float) -> list[Finding]:
        first, last = self._first, self._last
        if first is None or last is None:
            return []
        used = last[1] - first[1]
        covered = (last[0] - first[0]) / 86400.0
        if used < 0 or covered < self._coverage:
            return []
        used = used / covered if covered > 0 else used
        plan = self._plan
        if plan is None:
            learned = self._learned[is_weekend_day(self._closing)]
            if learned.n < self._min_days:
                learned.add(used, 14)
                return []
            plan = learned.value
        if plan <= 0:
            return []
        deviation = (used - plan) / plan
        evidence = {"day_kwh": used, "plan_kwh": plan, "deviation": deviation,
                    "tolerance": self._tolerance}
        if abs(deviation) > self._tolerance:
            return self._episode.raise_(ts, evidence)
        if self._plan is None:
            self._learned[is_weekend_day(self._closing)].add(used, 14)
        return self._episode.clear(ts, evidence)


class MeterPowerQuality(MonitorBase):
    """Voltage sag and phase imbalance.

    * sag: any phase voltage below ``sag_ratio`` x ``nominal_v`` for ``min_duration_s``;
      clears when all phases are back above ``sag_ratio + 0.02`` of nominal.
    * imbalance: the largest deviation of a phase current from the three-phase mean,
      over that mean, above ``imbalance_ratio`` for ``min_duration_s``, judged only when
      the mean current is at least ``min_current_a`` (0.2 A: below it the ratio is noise).
    """

    __slots__ = ("_imb_rule", "_imbalance", "_min_current", "_nominal", "_sag", "_sag_rule")

    _VOLTS = ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v")
    _AMPS = ("current_l1_a", "current_l2_a", "current_l3_a")

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._sag = p.number("sag_ratio", 0.9, lo=0.0, hi=1.0)
        self._nominal = p.number("nominal_v", 230.0, lo=1.0)
        self._imbalance = p.number("imbalance_ratio", 0.3, lo=0.0)
        self._min_current = p.number("min_current_a", 0.2, lo=0.0)
        duration = p.number("min_duration_s", 120.0, lo=0.0)
        clear_after = p.number("clear_after_s", 300.0, lo=0.0)
        p.done()
        self._sag_rule = ConditionMonitor(
            rule_event(profile, "voltage_sag"),
            Hysteresis(1.0, 0.0, min_duration=duration, clear_duration=clear_after),
        )
        self._imb_rule = ConditionMonitor(
            rule_event(profile, "phase_imbalance"),
            Hysteresis(1.0, 0.0, min_duration=duration, clear_duration=clear_after),
        )

    def observe(self, reading: Reading) -> list[Finding]:
        v = reading.values
        ts = reading.ts
        out: list[Finding] = []
        v1, v2, v3 = v.get("voltage_l1_v"), v.get("voltage_l2_v"), v.get("voltage_l3_v")
        if v1 is not None and v2 is not None and v3 is not None:
            low: float | None = min(v1, v2, v3)
        else:
            volts = [x for x in (v1, v2, v3) if x is not None]
            low = min(volts) if volts else None
        if low is not None:
            sag = low < self._sag * self._nominal
            recovered = low >= (self._sag + 0.02) * self._nominal
            rule = self._sag_rule
            if sag or recovered or not rule.episode.active:
                step = rule.step(ts, sag)
                if step is not None:
                    out += rule.emit(
                        step, ts, {"min_voltage_v": low, "limit_v": self._sag * self._nominal}
                    )
        a1, a2, a3 = v.get("current_l1_a"), v.get("current_l2_a"), v.get("current_l3_a")
        if a1 is not None and a2 is not None and a3 is not None:
            mean = (a1 + a2 + a3) / 3.0
            if mean >= self._min_current:
                ratio = max(abs(a1 - mean), abs(a2 - mean), abs(a3 - mean)) / mean
                step = self._imb_rule.step(ts, ratio > self._imbalance)
                if step is not None:
                    out += self._imb_rule.emit(
                        step, ts,
                        {"currents_a": [a1, a2, a3], "imbalance": ratio,
                         "limit": self._imbalance},
                    )
        return out


register("meter_baseline")(MeterBaseline)
register("meter_night_load")(MeterNightLoad)
register("meter_plan")(MeterPlan)
register("meter_power_quality")(MeterPowerQuality)
