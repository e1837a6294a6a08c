"""``gatehouse eval scenarios``: simulated fault scenarios with ground truth.

For every fault type the simulator can inject, ``devices`` devices of its kind each run a
scenario: a healthy lead-in long enough for the detectors to learn the device (longer for
meters, whose baselines are daily), the fault, then a healthy tail. Fault-free devices of
every kind run for ``days`` days. Every device's samples stream, in time order, through
the edge's detector chain of its kind (plus the kind's device-native events, which the
edge maps straight to event types), with ``tick`` at every sample time and the device's
status changes passed on. Meters alternate between dwellings and common areas; elevator
faults start at 09:00, when the car is in use.

Per fault type: recall (faults with a raised finding of their type between their start and
``end + grace``; grace is 10 min, plus a day for detectors that decide at the end of a
night or day), precision (raised findings of the type that fall in a fault of that type
on that device), median detection delay, false alarms per device-day (raises of the type
outside every fault window of the device, over all simulated device-days of the kind), and
for trend faults the forecast error ``|forecast - truth| / truth`` of the hours to the
limit at the moment of raising. ``overall`` sums the false alarms of every type.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig
from edge.detectors.base import Finding
from edge.detectors.chain import DetectorChain

START = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
GRACE_S = 600.0
DAY_END_TYPES = ("meter.plan_deviation", "meter.night_base_load")
"""Detectors that decide at the end of a night or day: their findings cover that period,
so a fault anywhere in the preceding day can be their cause."""
LEAD_S: dict[str, float] = {
    "water_pump": 3 * 3600.0,
    "elevator": 9 * 3600.0,
    "smart_meter": 4 * 86400.0 + 10 * 3600.0,
    "access_gate": 3600.0,
    "camera": 1800.0,
}
TAIL_S: dict[str, float] = {"smart_meter": 86400.0}
RAMP_OVERRIDE: dict[str, float] = {}
"""Trend ramps to shorten (none: the simulator's defaults are run as they are)."""


@dataclass
class TypeStats:
    """Accumulated results of one fault type."""

    injected: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)
    raised: int = 0
    raised_in_fault: int = 0
    false_raises: int = 0
    forecast_errors: list[float] = field(default_factory=list)


@dataclass
class Run:
    """One device's scenario: its faults and what the chain raised."""

    device: DeviceConfig
    start: float
    end: float
    faults: list[Any] = field(default_factory=list)
    raised: list[Finding] = field(default_factory=list)


def _simulate(run: Run, seed: int) -> None:
    from simulators.models import simulate_offline

    profile = load_profiles()[run.device.kind]
    chain = DetectorChain.for_device(profile, run.device)
    native = profile.device_events
    truth: list[Any] = []

    class _Sink:
        def record(self, spec: Any, kind: str | None = None) -> object:
            truth.append(spec)
            return spec

    found: list[Finding] = []
    for _dev, sample in simulate_offline(
        [run.device], run.start, run.end, run.faults, seed, truth=_Sink()
    ):
        if sample.status is not None:
            found += chain.on_status(sample.ts, sample.status == "online")
        if sample.values:
            found += chain.observe(
                Reading("sim", run.device.kind, run.device.id, sample.ts, sample.values)
            )
        found += chain.tick(sample.ts)
        for ev in sample.native_events:
            etype = native.get(str(ev.get("type")))
            if etype is not None:
                found.append(Finding(etype, "raised", float(ev.get("ts", sample.ts)),
                                     float(ev.get("ts", sample.ts))))
    run.faults = truth
    run.raised = [f for f in found if f.state == "raised"]


def scenarios(devices: int, days: float, types: Sequence[str] | None = None) -> list[Run]:
    """The scenario runs: faulted devices per fault type, and fault-free devices
    (``types`` limits both to those fault types and their kinds)."""
    from simulators.models import FAULT_TYPES, FaultSpec, default_duration
    from simulators.models.registry import MODELS

    runs: list[Run] = []
    for kind, kind_types in FAULT_TYPES.items():
        chosen = [t for t in kind_types if types is None or t in types]
        if not chosen:
            continue
        lead = LEAD_S.get(kind, 3600.0)
        tail = TAIL_S.get(kind, 3600.0)
        for ftype in chosen:
            params: dict[str, Any] = {}
            if ftype in RAMP_OVERRIDE:
                params["ramp"] = RAMP_OVERRIDE[ftype]
            duration = default_duration(MODELS[kind], ftype, params)
            for i in range(devices):
                dev_id = f"{ftype.replace('.', '-').replace('_', '-')}-{i}"
                common = i % 2 == 0 or ftype == "meter.night_base_load"
                dev = DeviceConfig(id=dev_id, kind=kind, params={"common_area": common})
                fstart = START + lead + 137.0 * i
                spec = FaultSpec(dev_id, ftype, fstart, fstart + duration, params)
                runs.append(Run(dev, START, fstart + duration + tail, [spec]))
        for i in range(devices):
            dev = DeviceConfig(id=f"healthy-{kind}-{i}".replace("_", "-"), kind=kind,
                               params={"common_area": i % 2 == 0})
            runs.append(Run(dev, START, START + days * 86400.0))
    return runs


def _grace(event_type: str) -> float:
    return 86400.0 + GRACE_S if event_type in DAY_END_TYPES else GRACE_S


def _in_fault(run: Run, f: Finding, same_type: bool) -> Any | None:
    for spec in run.faults:
        if same_type and spec.type != f.event_type:
            continue
        if spec.start <= f.ts <= spec.end + _grace(f.event_type):
            return spec
    return None


def evaluate(
    devices: int, days: float, seed: int, types: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run every scenario (or those of ``types``) and score it."""
    runs = scenarios(devices, days, types)
    stats: dict[str, TypeStats] = defaultdict(TypeStats)
    device_days: dict[str, float] = defaultdict(float)
    false_list: list[dict[str, Any]] = []
    for run in runs:
        _simulate(run, seed)
        kind = run.device.kind
        device_days[kind] += (run.end - run.start) / 86400.0
        for spec in run.faults:
            st = stats[spec.type]
            st.injected += 1
            hits = [f for f in run.raised if f.event_type == spec.type
                    and spec.start <= f.ts <= spec.end + _grace(spec.type)]
            if hits:
                first = min(hits, key=lambda f: f.ts)
                st.detected += 1
                st.delays.append(first.ts - spec.start)
                cross = spec.params.get("limit_cross_ts")
                if first.forecast is not None and cross is not None:
                    true_h = (float(cross) - first.ts) / 3600.0
                    if true_h > 0:
                        err = abs(first.forecast.hours_to_limit - true_h) / true_h
                        st.forecast_errors.append(err)
        for f in run.raised:
            st = stats[f.event_type]
            st.raised += 1
            if _in_fault(run, f, same_type=True) is not None:
                st.raised_in_fault += 1
            elif _in_fault(run, f, same_type=False) is None:
                st.false_raises += 1
                false_list.append({
                    "device": run.device.id, "type": f.event_type,
                    "hours_from_start": round((f.ts - run.start) / 3600.0, 3),
                    "evidence": {k: v for k, v in f.evidence.items() if k != "normal"},
                })
    profiles = load_profiles()
    kind_of = {e: k for k, p in profiles.items() for e in p.events}
    per_type: dict[str, Any] = {}
    for etype in sorted(stats):
        st = stats[etype]
        days_kind = device_days.get(kind_of.get(etype, ""), 0.0)
        entry: dict[str, Any] = {
            "injected": st.injected,
            "detected": st.detected,
            "recall": round(st.detected / st.injected, 3) if st.injected else None,
            "precision": round(st.raised_in_fault / st.raised, 3) if st.raised else None,
            "median_delay_s": round(statistics.median(st.delays), 1) if st.delays else None,
            "false_alarms": st.false_raises,
            "false_alarms_per_device_day": round(st.false_raises / days_kind, 4)
            if days_kind else None,
        }
        if st.forecast_errors:
            entry["forecast_error_median"] = round(statistics.median(st.forecast_errors), 3)
            entry["forecast_error_max"] = round(max(st.forecast_errors), 3)
        per_type[etype] = entry
    total_days = sum(device_days.values())
    total_false = sum(st.false_raises for st in stats.values())
    recalls = [e["recall"] for e in per_type.values() if e["recall"] is not None]
    return {
        "seed": seed,
        "devices_per_fault": devices,
        "healthy_days": days,
        "device_days": round(total_days, 2),
        "fault_types": len(recalls),
        "min_recall": min(recalls) if recalls else None,
        "false_alarms": total_false,
        "false_alarms_per_100_device_days": round(100 * total_false / total_days, 3)
        if total_days else None,
        "per_type": per_type,
        "false_alarm_list": false_list[:50],
    }


def run(args: argparse.Namespace) -> int:
    devices = args.devices or 3
    days = args.days or 1.0
    result = evaluate(devices, days, args.seed)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['device_days']} device-days, false alarms per 100 device-days: "
          f"{result['false_alarms_per_100_device_days']}, min recall {result['min_recall']}")
    for etype, e in result["per_type"].items():
        fc = ""
        if "forecast_error_median" in e:
            fc = f", forecast error {e['forecast_error_median']}"
        print(f"  {etype:28s} recall {e['recall']} precision {e['precision']} "
              f"delay {e['median_delay_s']} s, false {e['false_alarms']}{fc}")
    return 0
