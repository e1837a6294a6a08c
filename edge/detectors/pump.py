"""Water pumps: the multivariate learned model and the rules a pump engineer recognises."""

from __future__ import annotations

from typing import Any

from device_profiles.messages import Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import DetectorConfigError, Finding, MonitorBase, register
from edge.detectors.common import (
    Hysteresis,
    Params,
    condition_from,
    event_type,
    numeric_fields,
    rule_event,
)
from edge.detectors.models import only_when_params
from edge.detectors.scorers import MewmaScorer
from edge.detectors.threshold import ScoreMonitor
from edge.detectors.trend import LinearTrend

PUMP_MODEL_DEFAULTS: dict[str, float] = {
    "warmup": 400,
    "span": 10,
    "quantile": 1.0,
    "margin": 2.5,
    "shrinkage": 0.1,
    "adapt_rate": 0.0,
    "clip": 10.0,
    "clear_level": 0.8,
    "cooldown_s": 0.0,
}
"""The one configuration for every pump, chosen on the SKAB testbed by cross-validation over
its recordings (5 folds over files; highest training F1 with FAR <= 10 % and NAB standard
>= 33; docs/detection.md, "Pump testbed"). Nothing is tuned per pump."""


def build_pump_model(
    spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig
) -> ScoreMonitor:
    """``pump_model``: a multivariate EWMA chart (:class:`MewmaScorer`) raising ``pump.anomaly``.

    Learns each pump's own normal from its first ``warmup`` samples (only while running,
    with ``only_when``), then scores the smoothed sample vector; raise at the calibrated
    edge of normal (1.0), hold the alarm until the score falls to ``clear_level``.
    Params: ``warmup``, ``span``, ``quantile``, ``margin``, ``shrinkage``, ``adapt_rate``,
    ``clip``; ``clear_level``, ``min_duration_s``, ``clear_after_s``, ``cooldown_s``;
    ``only_when`` / ``only_when_min`` / ``settle_s``.
    """
    p = Params(spec)
    d = PUMP_MODEL_DEFAULTS
    fields = numeric_fields(profile, spec)
    settings = {
        "warmup": p.integer("warmup", int(d["warmup"]), lo=20),
        "span": p.integer("span", int(d["span"]), lo=1),
        "quantile": p.number("quantile", d["quantile"], lo=0.5, hi=1.0),
        "margin": p.number("margin", d["margin"], lo=0.01),
        "shrinkage": p.number("shrinkage", d["shrinkage"], lo=0.0, hi=0.99),
        "adapt_rate": p.number("adapt_rate", d["adapt_rate"], lo=0.0, hi=0.5),
        "clip": p.number("clip", d["clip"], lo=0.1),
    }
    try:
        scorer = MewmaScorer(
            fields, warmup=int(settings["warmup"]), span=int(settings["span"]),
            quantile=settings["quantile"], margin=settings["margin"],
            shrinkage=settings["shrinkage"], adapt_rate=settings["adapt_rate"],
            clip=settings["clip"],
        )
    except DetectorConfigError as exc:
        raise DetectorConfigError(f"detector {spec.name!r}: {exc}") from exc
    gate = Hysteresis(
        1.0,
        p.number("clear_level", d["clear_level"], lo=0.0, hi=1.0),
        min_duration=p.number("min_duration_s", 0.0, lo=0),
        clear_duration=p.number("clear_after_s", 0.0, lo=0),
        cooldown=p.number("cooldown_s", d["cooldown_s"], lo=0),
    )
    only_when, settle = only_when_params(p, profile)
    p.done()
    return ScoreMonitor(
        scorer, fields, event_type(profile, spec, "anomaly"), gate,
        only_when=only_when, settle_s=settle,
    )


class _Ewma:
    """Exponentially weighted mean that starts as a plain mean for its first samples."""

    __slots__ = ("alpha", "n", "value")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.n = 0
        self.value = 0.0

    def add(self, v: float) -> None:
        self.n += 1
        rate = max(self.alpha, 1.0 / self.n)
        self.value += rate * (v - self.value)


class PumpRules(MonitorBase):
    """Cavitation, dry running and leaks, judged against the pump's own learned normal.

    The pump's normal running current, vibration, pressure and flow are learned (slow
    exponential means) over the first ``warmup`` running samples and then while no rule is
    raised. A sample is *running* when the current exceeds ``idle_current_a``, *spinning*
    when the vibration exceeds ``spin_ratio`` of normal.

    * dry running: spinning, current below ``dry_current_ratio`` of normal and flow below
      ``dry_flow_ratio`` of normal (pressure instead when the pump has no flow meter);
    * cavitation: running at normal current (>= ``cav_current_ratio``), vibration at least
      ``cav_vibration_ratio`` of normal and pressure (and flow) below ``cav_drop_ratio``;
    * leak: while idle, pressure falls at ``leak_rate_bar_per_h`` or faster: the slope of a
      least-squares line through the idle period's pressure (its last hour at most), once
      it spans ``leak_min_idle_s`` and is clear of noise (t >= 4), judged every 10 samples;
      a healthy closed system holds its pressure.
    """

    __slots__ = (
        "_alpha",
        "_cav",
        "_cav_current",
        "_cav_drop",
        "_cav_vib",
        "_current",
        "_dry",
        "_dry_current",
        "_dry_flow",
        "_flow",
        "_idle",
        "_idle_current",
        "_idle_n",
        "_leak",
        "_leak_idle",
        "_leak_rate",
        "_pressure",
        "_spin_ratio",
        "_vib",
        "_warmup",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._warmup = p.integer("warmup", 300, lo=1)
        self._alpha = p.number("adapt_rate", 0.002, lo=0.0, hi=1.0)
        self._idle_current = p.number("idle_current_a", 0.3, lo=0.0)
        self._spin_ratio = p.number("spin_ratio", 0.5, lo=0.0)
        self._dry_current = p.number("dry_current_ratio", 0.7, lo=0.0)
        self._dry_flow = p.number("dry_flow_ratio", 0.2, lo=0.0)
        self._cav_current = p.number("cav_current_ratio", 0.8, lo=0.0)
        self._cav_vib = p.number("cav_vibration_ratio", 1.5, lo=1.0)
        self._cav_drop = p.number("cav_drop_ratio", 0.85, lo=0.0, hi=1.0)
        self._leak_rate = p.number("leak_rate_bar_per_h", 0.5, lo=0.0)
        self._leak_idle = p.number("leak_min_idle_s", 300.0, lo=1.0)
        period = profile.sampling_period
        self._dry = condition_from(
            p, rule_event(profile, "dry_running"), prefix="dry_",
            min_duration_s=10 * period, clear_after_s=30 * period,
        )
        self._cav = condition_from(
            p, rule_event(profile, "cavitation"), prefix="cav_",
            min_duration_s=30 * period, clear_after_s=120 * period, cooldown_s=300 * period,
        )
        self._leak = condition_from(p, rule_event(profile, "leak"), prefix="leak_")
        p.done()
        self._current = _Ewma(self._alpha)
        self._vib = _Ewma(self._alpha)
        self._pressure = _Ewma(self._alpha)
        self._flow = _Ewma(self._alpha)
        self._idle: tuple[float, LinearTrend] | None = None
        self._idle_n = 0

    def _learn(self, current: float, vib: float, pressure: float, flow: float | None) -> None:
        self._current.add(current)
        self._vib.add(vib)
        self._pressure.add(pressure)
        if flow is not None:
            self._flow.add(flow)

    def observe(self, reading: Reading) -> list[Finding]:
        v = reading.values
        ts = reading.ts
        current = v.get("current_a")
        pressure = v.get("pressure_bar")
        a1, a2 = v.get("accel1_rms"), v.get("accel2_rms")
        if current is None or pressure is None or a1 is None or a2 is None:
            return []
        vib = max(a1, a2)
        flow = v.get("flow_lpm")
        running = current > self._idle_current
        out: list[Finding] = []
        if self._current.n < self._warmup:
            if running:
                self._learn(current, vib, pressure, flow)
            return out
        ref_i, ref_vib, ref_p = self._current.value, self._vib.value, self._pressure.value
        ref_f = self._flow.value if self._flow.n else None
        spinning = vib > self._spin_ratio * ref_vib
        low_flow = (
            flow < self._dry_flow * ref_f if flow is not None and ref_f
            else pressure < self._dry_flow * ref_p
        )
        dry = spinning and current < self._dry_current * ref_i and low_flow
        drop = pressure < self._cav_drop * ref_p and (
            flow is None or not ref_f or flow < self._cav_drop * ref_f
        )
        cav = (
            running and current >= self._cav_current * ref_i
            and vib >= self._cav_vib * ref_vib and drop
        )
        dry_step = self._dry.step(ts, dry)
        cav_step = self._cav.step(ts, cav)
        if dry_step is not None or cav_step is not None:
            # built only for a transition (a dict per reading was most of this rule's cost)
            evidence: dict[str, Any] = {
                "current_a": current, "vibration": vib, "pressure_bar": pressure,
                "flow_lpm": flow,
                "normal": {"current_a": ref_i, "vibration": ref_vib, "pressure_bar": ref_p,
                           "flow_lpm": ref_f},
            }
            if dry_step is not None:
                out += self._dry.emit(dry_step, ts, evidence)
            if cav_step is not None:
                out += self._cav.emit(cav_step, ts, evidence)
        if running or spinning:
            self._idle = None  # what _leak_step does for a driven pump, without the call
        else:
            out += self._leak_step(ts, False, pressure)
        quiet = not (self._dry.episode.active or self._cav.episode.active or dry or cav)
        if running and quiet:
            self._learn(current, vib, pressure, flow)
        return out

    def _leak_step(self, ts: float, driven: bool, pressure: float) -> list[Finding]:
        if driven:
            self._idle = None
            return []
        if self._idle is None:
            self._idle = (ts, LinearTrend(max(3600.0, 2 * self._leak_idle)))
            self._idle_n = 0
        t0, line = self._idle
        line.add(ts, pressure)
        self._idle_n += 1
        elapsed = ts - t0
        if elapsed < self._leak_idle or self._idle_n % 10:
            return []
        fit = line.fit()
        if fit is None:
            return []
        slope, now_value, tstat = fit
        decay = -slope
        evidence = {"idle_s": elapsed, "pressure_now": now_value, "decay_bar_per_h": decay}
        if decay >= self._leak_rate and tstat >= 4.0:
            return self._leak.update(ts, True, evidence)
        if decay < self._leak_rate / 2:
            return self._leak.update(ts, False, evidence)
        return []


register("pump_model")(build_pump_model)
register("pump_rules")(PumpRules)
