"""The offline device models: determinism, valid ranges, realistic shape, the API contract."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict

import pytest

from device_profiles.loader import load_profiles
from device_profiles.site import DeviceConfig, EstateLayout
from simulators.models import (
    FAULT_TYPES,
    FaultError,
    FaultSpec,
    Sample,
    make_model,
    simulate_offline,
)
from simulators.models.daily import hour_of_day

MONDAY = 1_700_438_400.0
"""2023-11-20 00:00 UTC, a Monday."""


def small_estate() -> list[DeviceConfig]:
    return EstateLayout(
        buildings=1,
        floors=12,
        elevators_per_building=1,
        pumps_per_building=1,
        meters_per_building=2,
        gates=1,
        cameras_per_building=1,
    ).devices()


def test_same_seed_same_samples_other_seed_differs() -> None:
    devices = small_estate()

    def run(seed: int) -> list[tuple[str, float, dict[str, float]]]:
        return [
            (d.id, s.ts, s.values)
            for d, s in simulate_offline(devices, MONDAY, MONDAY + 1800, seed=seed)
        ]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert len(first) == len(other)
    assert first != other


def test_models_are_independent_of_device_order() -> None:
    devices = small_estate()
    forward = defaultdict(list)
    backward = defaultdict(list)
    for d, s in simulate_offline(devices, MONDAY, MONDAY + 600, seed=3):
        forward[d.id].append(s.values)
    for d, s in simulate_offline(list(reversed(devices)), MONDAY, MONDAY + 600, seed=3):
        backward[d.id].append(s.values)
    assert forward == backward


def test_a_day_of_every_kind_stays_within_the_profiles() -> None:
    profiles = load_profiles()
    seen_kinds: set[str] = set()
    last_ts = 0.0
    for device, sample in simulate_offline(small_estate(), MONDAY, MONDAY + 86400, seed=1):
        assert sample.ts >= last_ts
        last_ts = sample.ts
        profile = profiles[device.kind]
        seen_kinds.add(device.kind)
        assert set(profile.required) <= set(sample.values)
        for name, value in sample.values.items():
            spec = profile.fields[name]
            assert spec.min <= value <= spec.max, (device.id, name, value)
            if spec.type != "float":
                assert isinstance(value, int), (device.id, name, value)
            if spec.warn_high is not None:
                assert value <= spec.warn_high, (device.id, name, value)
            if spec.warn_low is not None:
                assert value >= spec.warn_low, (device.id, name, value)
    assert seen_kinds == set(FAULT_TYPES)


def test_samples_come_at_the_profile_period() -> None:
    profiles = load_profiles()
    times = defaultdict(list)
    for d, s in simulate_offline(small_estate(), MONDAY, MONDAY + 600, seed=1):
        times[d.id].append((d.kind, s.ts))
    for series in times.values():
        kind = series[0][0]
        steps = {round(b[1] - a[1], 6) for a, b in itertools.pairwise(series)}
        assert steps == {profiles[kind].sampling_period}


def hourly(device: DeviceConfig, field: str, days: float = 1.0, seed: int = 2) -> list[float]:
    """Mean of ``field`` per hour of the day over ``days`` weekdays."""
    sums: dict[int, list[float]] = defaultdict(list)
    for _, s in simulate_offline([device], MONDAY, MONDAY + days * 86400, seed=seed):
        sums[int(hour_of_day(s.ts))].append(s.values[field])
    return [statistics.fmean(sums[h]) for h in range(24)]


def test_dwelling_meter_peaks_in_the_evening_common_area_is_flat() -> None:
    dwelling = DeviceConfig(id="m-dw", kind="smart_meter", params={"common_area": False})
    common = DeviceConfig(id="m-co", kind="smart_meter", params={"common_area": True})
    dw = hourly(dwelling, "power_kw")
    co = hourly(common, "power_kw")
    assert max(range(24), key=lambda h: dw[h]) in range(18, 22)
    assert statistics.fmean(dw[18:21]) > 3 * statistics.fmean(dw[2:5])
    assert max(co) < 1.6 * min(co)
    assert min(co) > 2.0


def test_gate_bursts_at_rush_hours_with_grants_close_to_passages() -> None:
    gate = DeviceConfig(id="gate-x", kind="access_gate")
    per_hour = hourly(gate, "passages")
    assert statistics.fmean(per_hour[7:9]) > 5 * statistics.fmean(per_hour[10:16])
    assert statistics.fmean(per_hour[17:20]) > 3 * statistics.fmean(per_hour[10:16])
    grants = passages = 0.0
    for _, s in simulate_offline([gate], MONDAY, MONDAY + 86400, seed=2):
        grants += s.values["grants"]
        passages += s.values["passages"]
    assert grants > 500
    assert abs(passages - grants) < 0.03 * grants


def test_elevator_trips_are_busier_at_rush_hours_and_doors_cycle_5_to_7_s() -> None:
    elevator = DeviceConfig(id="elev-x", kind="elevator")
    trips = hourly(elevator, "trips")
    assert statistics.fmean(trips[7:9]) > 2 * statistics.fmean(trips[1:5])
    cycles = [
        s.values["door_cycle_s"]
        for _, s in simulate_offline([elevator], MONDAY + 8 * 3600, MONDAY + 9 * 3600, seed=2)
        if "door_cycle_s" in s.values
    ]
    assert len(cycles) > 100
    assert 5.0 <= statistics.median(cycles) <= 7.0
    assert max(cycles) < 9.0


def test_elevator_busyness_param_scales_its_night_traffic() -> None:
    def night_door_cycles(params: dict[str, object]) -> int:
        car = DeviceConfig(id="elev-b", kind="elevator", params=params)
        window = simulate_offline([car], MONDAY + 1 * 3600, MONDAY + 4 * 3600, seed=5)
        return sum("door_cycle_s" in s.values for _, s in window)

    quiet, busy = night_door_cycles({}), night_door_cycles({"busyness": 4.0})
    assert quiet >= 2  # a few calls an hour, two door cycles each
    assert busy > 2.5 * quiet
    assert night_door_cycles({"busyness": 0}) == 0
    for bad in ("lots", -1, float("nan")):
        with pytest.raises(ValueError, match=r"elev-b: params\.busyness must be a number"):
            night_door_cycles({"busyness": bad})


def test_pump_runs_duty_cycles_with_consistent_signals() -> None:
    pump = DeviceConfig(id="pump-x", kind="water_pump")
    running = idle = 0
    states: list[bool] = []
    for _, s in simulate_offline([pump], MONDAY, MONDAY + 6 * 3600, seed=4):
        v = s.values
        states.append(v["current_a"] > 1.0)
        if len(set(states[-15:])) > 1:
            continue  # starting or stopping
        if v["current_a"] > 1.5:
            running += 1
            assert v["flow_lpm"] > 80
            assert 0.015 < v["accel1_rms"] < 0.04
        elif v["current_a"] < 0.2:
            idle += 1
            assert v["flow_lpm"] < 5
            assert v["accel1_rms"] < 0.01
    assert running > 3600 and idle > 600


# -- faults ---------------------------------------------------------------------------

DEVICES = {
    "elevator": DeviceConfig(id="elev-f", kind="elevator"),
    "water_pump": DeviceConfig(id="pump-f", kind="water_pump", params={"duty": "continuous"}),
    "smart_meter": DeviceConfig(id="meter-f", kind="smart_meter"),
    "access_gate": DeviceConfig(id="gate-f", kind="access_gate"),
    "camera": DeviceConfig(id="cam-f", kind="camera"),
}


def run_with(
    kind: str,
    fault_type: str | None,
    start: float,
    fault_len: float,
    after: float = 0.0,
    params: dict[str, object] | None = None,
    device: DeviceConfig | None = None,
) -> tuple[list[Sample], list[Sample], FaultSpec | None]:
    """Samples inside the fault window, with and without the fault (same seed)."""
    dev = device or DEVICES[kind]
    spec = None
    faults = []
    if fault_type is not None:
        spec = FaultSpec(dev.id, fault_type, start, start + fault_len, dict(params or {}))
        faults.append(spec)
    lead = 600.0
    faulty = [
        s for _, s in simulate_offline([dev], start - lead, start + fault_len + after, faults, 5)
    ]
    healthy = [
        s for _, s in simulate_offline([dev], start - lead, start + fault_len + after, (), 5)
    ]
    inside = [s for s in faulty if start <= s.ts < start + fault_len]
    base = [s for s in healthy if start <= s.ts < start + fault_len]
    if spec is not None:
        model = make_model(dev, 5)
        spec = model.inject(spec)
    return inside, base, spec


def mean(samples: list[Sample], field: str) -> float:
    return statistics.fmean(s.values[field] for s in samples if field in s.values)


def check_bearing_wear() -> None:
    start = MONDAY + 10 * 3600
    inside, base, spec = run_with(
        "water_pump", "pump.bearing_wear", start, 3600, params={"ramp": 3000}
    )
    assert spec is not None and spec.params["limit_cross_ts"] == start + 3000
    assert spec.params["limit"] == 0.5 and spec.params["field"] == "accel1_rms"
    near = [s for s in inside if abs(s.ts - (start + 3000)) < 60]
    assert abs(mean(near, "accel1_rms") - 0.5) < 0.02
    early = [s for s in inside if s.ts < start + 300]
    late = [s for s in inside if s.ts > start + 3300]
    assert mean(late, "accel1_rms") > 10 * mean(early, "accel1_rms") / 2
    assert mean(late, "accel2_rms") > 2 * mean(base, "accel2_rms")


def check_cavitation() -> None:
    inside, base, _ = run_with("water_pump", "pump.cavitation", MONDAY + 10 * 3600, 900)
    assert mean(inside, "pressure_bar") < 0.75 * mean(base, "pressure_bar")
    assert mean(inside, "flow_lpm") < 0.75 * mean(base, "flow_lpm")
    assert abs(mean(inside, "current_a") - mean(base, "current_a")) < 0.15 * mean(base, "current_a")
    noisy = statistics.pstdev(s.values["accel1_rms"] for s in inside)
    calm = statistics.pstdev(s.values["accel1_rms"] for s in base)
    assert noisy > 5 * calm


def check_dry_running() -> None:
    inside, base, _ = run_with("water_pump", "pump.dry_running", MONDAY + 10 * 3600, 300)
    settled = inside[30:]
    assert mean(settled, "flow_lpm") < 2
    assert mean(settled, "current_a") < 0.5 * mean(base, "current_a")
    assert min(s.values["current_a"] for s in settled) > 0.3
    assert mean(settled, "pressure_bar") < 0.5


def check_leak() -> None:
    pump = DeviceConfig(id="pump-leak", kind="water_pump")
    inside, base, _ = run_with("water_pump", "pump.leak", MONDAY + 10 * 3600, 1800, device=pump)
    idle = [s for s in inside if s.values["current_a"] < 0.2]
    assert len(idle) > 300
    drops = [
        b.values["pressure_bar"] - a.values["pressure_bar"]
        for a, b in itertools.pairwise(idle)
        if b.ts - a.ts < 1.5
    ]
    assert statistics.fmean(drops) < -0.002
    assert min(s.values["pressure_bar"] for s in idle) < 1.5
    healthy_idle = [s for s in base if s.values["current_a"] < 0.2 and s.ts > base[0].ts + 60]
    assert all(s.values["pressure_bar"] > 2.0 for s in healthy_idle)


def check_offline(kind: str, fault_type: str) -> None:
    dev = DEVICES[kind]
    start = MONDAY + 10 * 3600
    spec = FaultSpec(dev.id, fault_type, start, start + 300)
    samples = [s for _, s in simulate_offline([dev], start - 120, start + 420, [spec], 5)]
    silent = [s for s in samples if not s.values]
    assert silent and all(start <= s.ts < start + 300 for s in silent)
    assert silent[0].status == "offline"
    back = [s for s in samples if s.status == "online"]
    assert len(back) == 1 and back[0].ts >= start + 300 and back[0].values


def check_entrapment() -> None:
    start = MONDAY + 8 * 3600
    inside, _, _ = run_with("elevator", "elevator.entrapment", start, 300, after=300)
    assert len(inside) == 150
    for s in inside:
        v = s.values
        assert (v["at_landing"], v["door_open"], v["moving"]) == (0, 0, 0)
        assert v["load_kg"] > 20
    dev = DEVICES["elevator"]
    spec = FaultSpec(dev.id, "elevator.entrapment", start, start + 300)
    after = [
        s for _, s in simulate_offline([dev], start, start + 400, [spec], 5) if s.ts >= start + 300
    ]
    assert any(s.values["at_landing"] == 1 and s.values["door_open"] == 1 for s in after)


def check_door_fault() -> None:
    inside, base, _ = run_with(
        "elevator", "elevator.door_fault", MONDAY + 8 * 3600, 1800, params={"ramp": 300}
    )
    late = [s for s in inside if s.ts > inside[0].ts + 600]
    assert mean(late, "door_cycle_s") > 9
    assert sum(s.values["door_reversals"] for s in late) > 3 * max(
        1, sum(s.values["door_reversals"] for s in base)
    )
    assert sum(s.values["door_close_failures"] for s in late) > 0
    assert mean(base, "door_cycle_s") < 7


def check_door_wear() -> None:
    start = MONDAY + 7 * 3600
    inside, _, spec = run_with(
        "elevator", "elevator.door_wear", start, 4 * 3600, params={"ramp": 3 * 3600}
    )
    assert spec is not None and spec.params["limit_cross_ts"] == start + 3 * 3600
    assert spec.params["limit"] == 12
    inside = [s for s in inside if "door_cycle_s" in s.values]
    near = [s for s in inside if abs(s.ts - (start + 3 * 3600)) < 900]
    assert abs(statistics.median(s.values["door_cycle_s"] for s in near) - 12) < 1.0
    early = [s for s in inside if s.ts < start + 900]
    assert statistics.median(s.values["door_cycle_s"] for s in early) < 8


def check_leveling_error() -> None:
    inside, base, _ = run_with("elevator", "elevator.leveling_error", MONDAY + 8 * 3600, 1800)
    late = inside[len(inside) // 2 :]
    beyond = [abs(s.values["leveling_error_mm"]) > 15 for s in late]
    assert sum(beyond) > 0.95 * len(beyond)
    assert mean(late, "leveling_error_mm") > 20
    assert all(abs(s.values["leveling_error_mm"]) < 15 for s in base)


def check_abnormal_vibration() -> None:
    inside, base, _ = run_with("elevator", "elevator.abnormal_vibration", MONDAY + 8 * 3600, 900)
    moving = [s for s in inside if s.values["moving"] == 1]
    assert len(moving) > 20
    assert mean(moving, "vibration_rms") > 0.8
    assert mean(moving, "motor_current_a") > 60
    healthy = [s for s in base if s.values["moving"] == 1]
    assert max(s.values["vibration_rms"] for s in healthy) < 0.8


def check_energy_spike() -> None:
    inside, base, _ = run_with("smart_meter", "meter.energy_spike", MONDAY + 12 * 3600, 1800)
    assert mean(inside, "power_kw") > 2.5 * mean(base, "power_kw")
    assert mean(inside, "power_kw") - mean(base, "power_kw") > 1.0


def check_night_base_load() -> None:
    inside, base, _ = run_with("smart_meter", "meter.night_base_load", MONDAY + 3600, 4 * 3600)
    assert mean(inside, "power_kw") > 1.5 * mean(base, "power_kw")


def check_voltage_sag() -> None:
    inside, base, _ = run_with("smart_meter", "meter.voltage_sag", MONDAY + 12 * 3600, 600)
    for phase in ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v"):
        assert all(s.values[phase] < 0.9 * 230 for s in inside)
        assert all(s.values[phase] > 0.9 * 230 for s in base)


def imbalance(s: Sample) -> float:
    cur = [s.values[f"current_l{i}_a"] for i in (1, 2, 3)]
    return (max(cur) - min(cur)) / statistics.fmean(cur)


def check_phase_imbalance() -> None:
    inside, base, _ = run_with("smart_meter", "meter.phase_imbalance", MONDAY + 12 * 3600, 1800)
    assert all(imbalance(s) > 0.3 for s in inside)
    assert all(imbalance(s) < 0.3 for s in base)


def check_forced_open() -> None:
    start = MONDAY + 12 * 3600 + 2.5
    inside, _, _ = run_with("access_gate", "gate.forced_open", start, 30)
    events = [e for s in inside for e in s.native_events]
    assert [e["type"] for e in events] == ["forced_open"]
    assert all(s.values["door_open"] == 1 and s.values["grants"] == 0 for s in inside)


def check_brute_force() -> None:
    inside, base, _ = run_with("access_gate", "gate.brute_force", MONDAY + 12 * 3600, 120)
    per_minute = sum(s.values["denials"] for s in inside) / 2
    assert per_minute > 5
    assert sum(s.values["denials"] for s in base) <= 2


def check_held_open() -> None:
    inside, _, _ = run_with("access_gate", "gate.held_open", MONDAY + 12 * 3600, 180)
    assert all(s.values["door_open"] == 1 for s in inside)
    assert max(s.values["door_open_s"] for s in inside) > 170


def check_tailgating() -> None:
    inside, base, _ = run_with("access_gate", "gate.tailgating", MONDAY + 3 * 3600, 300)
    excess = sum(s.values["passages"] - s.values["grants"] for s in inside)
    assert excess >= 3 * 10
    assert max(s.values["passages"] - s.values["grants"] for s in inside) > 2
    assert sum(s.values["passages"] - s.values["grants"] for s in base) <= 1


def check_tamper() -> None:
    inside, _, _ = run_with("access_gate", "gate.tamper", MONDAY + 12 * 3600, 60)
    assert [e["type"] for s in inside for e in s.native_events] == ["tamper"]
    assert all(s.values["tamper"] == 1 for s in inside)


def check_stream_degraded() -> None:
    inside, base, _ = run_with("camera", "camera.stream_degraded", MONDAY + 12 * 3600, 600)
    assert mean(inside, "fps") < 10
    assert mean(base, "fps") > 20


CHECKS = {
    "pump.bearing_wear": check_bearing_wear,
    "pump.cavitation": check_cavitation,
    "pump.dry_running": check_dry_running,
    "pump.leak": check_leak,
    "elevator.entrapment": check_entrapment,
    "elevator.door_fault": check_door_fault,
    "elevator.door_wear": check_door_wear,
    "elevator.leveling_error": check_leveling_error,
    "elevator.abnormal_vibration": check_abnormal_vibration,
    "meter.energy_spike": check_energy_spike,
    "meter.night_base_load": check_night_base_load,
    "meter.voltage_sag": check_voltage_sag,
    "meter.phase_imbalance": check_phase_imbalance,
    "gate.forced_open": check_forced_open,
    "gate.brute_force": check_brute_force,
    "gate.held_open": check_held_open,
    "gate.tailgating": check_tailgating,
    "gate.tamper": check_tamper,
    "camera.stream_degraded": check_stream_degraded,
}
ALL_TYPES = sorted(t for types in FAULT_TYPES.values() for t in types)


def test_every_injectable_fault_has_a_check() -> None:
    offline = {t for t in ALL_TYPES if t.endswith(".offline")}
    assert set(CHECKS) | offline == set(ALL_TYPES)
    assert len(offline) == len(FAULT_TYPES)


@pytest.mark.parametrize("fault_type", ALL_TYPES)
def test_fault_changes_the_signals_it_should(fault_type: str) -> None:
    if fault_type.endswith(".offline"):
        kind = next(k for k, types in FAULT_TYPES.items() if fault_type in types)
        check_offline(kind, fault_type)
    else:
        CHECKS[fault_type]()


@pytest.mark.parametrize("fault_type", ALL_TYPES)
def test_faulty_values_stay_within_the_valid_range(fault_type: str) -> None:
    kind = next(k for k, types in FAULT_TYPES.items() if fault_type in types)
    dev = DEVICES[kind]
    profile = load_profiles()[kind]
    start = MONDAY + 8 * 3600
    spec = FaultSpec(
        dev.id,
        fault_type,
        start,
        start + 3600,
        {"ramp": 1800.0} if fault_type.endswith("_wear") else {},
    )
    for _, s in simulate_offline([dev], start - 60, start + 3700, [spec], 9):
        for name, value in s.values.items():
            assert profile.fields[name].min <= value <= profile.fields[name].max, (name, value)


def test_inject_rejects_wrong_device_type_and_window() -> None:
    model = make_model(DEVICES["water_pump"], 1)
    with pytest.raises(FaultError, match="injected into"):
        model.inject(FaultSpec("other", "pump.leak", 0, 10))
    with pytest.raises(FaultError, match="not injectable"):
        model.inject(FaultSpec("pump-f", "elevator.entrapment", 0, 10))
    with pytest.raises(FaultError, match="must be after"):
        model.inject(FaultSpec("pump-f", "pump.leak", 10, 10))
    with pytest.raises(FaultError, match="ramp"):
        model.inject(FaultSpec("pump-f", "pump.bearing_wear", 0, 10, {"ramp": 0}))
    meter = make_model(DEVICES["smart_meter"], 1)
    with pytest.raises(FaultError, match="shares"):
        meter.inject(FaultSpec("meter-f", "meter.phase_imbalance", 0, 10, {"shares": "1,2"}))


def test_step_refuses_time_going_backwards_and_reports_period() -> None:
    model = make_model(DEVICES["elevator"], 1)
    assert model.period == 2.0
    model.step(MONDAY)
    with pytest.raises(ValueError, match="backwards"):
        model.step(MONDAY - 1)


def test_simulate_offline_rejects_a_fault_for_an_unknown_device() -> None:
    with pytest.raises(FaultError, match="unknown device"):
        list(
            simulate_offline(
                small_estate(),
                MONDAY,
                MONDAY + 10,
                [FaultSpec("nope", "pump.leak", MONDAY, MONDAY + 5)],
            )
        )
