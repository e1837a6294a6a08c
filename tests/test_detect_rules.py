"""Each detector on small synthetic signals: the fault raises, normal data does not."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig
from edge.detectors import DeviceMonitor, Finding, build_monitors

PROFILES = load_profiles()
T0 = 1_700_006_400.0  # a Wednesday 00:00 UTC


def monitor(kind: str, name: str, params: dict[str, Any] | None = None,
            device_params: dict[str, Any] | None = None) -> DeviceMonitor:
    profile = PROFILES[kind]
    dets = []
    for d in profile.detectors:
        if d.name == name:
            dets.append(d.model_copy(update={"params": {**d.params, **(params or {})}}))
    assert dets, f"{kind} has no {name}"
    device = DeviceConfig(id="d1", kind=kind, params=device_params or {})
    (m,) = build_monitors(profile.model_copy(update={"detectors": tuple(dets)}), device)
    return m


def feed(m: DeviceMonitor, kind: str, rows: Iterable[tuple[float, dict[str, float]]]
         ) -> list[Finding]:
    out: list[Finding] = []
    for ts, values in rows:
        out += m.observe(Reading("s", kind, "d1", ts, values))
    return out


def states(findings: list[Finding], event: str | None = None) -> list[str]:
    return [f.state for f in findings if event is None or f.event_type == event]


# generic ---------------------------------------------------------------------------------

def test_offline_by_silence_by_status_and_cleared_by_reading() -> None:
    m = monitor("water_pump", "offline")
    feed(m, "water_pump", [(T0, {"current_a": 1.0})])
    assert m.tick(T0 + 29) == []
    (raised,) = m.tick(T0 + 45)
    assert raised.state == "raised" and raised.episode_start == T0 + 30
    assert m.tick(T0 + 50) == []
    (cleared,) = feed(m, "water_pump", [(T0 + 60, {"current_a": 1.0})])
    assert cleared.state == "cleared" and cleared.episode_start == T0 + 30
    (by_status,) = m.on_status(T0 + 61, False)
    assert by_status.state == "raised" and by_status.episode_start == T0 + 61


def test_out_of_range_raises_and_clears_inside_the_margin() -> None:
    m = monitor("elevator", "out_of_range")
    rows = [(T0 + 2 * i, {"vibration_rms": v}) for i, v in
            enumerate([0.3, 0.3, 0.9, 0.9, 0.79, 0.79, 0.79, 0.3, 0.3, 0.3])]
    found = feed(m, "elevator", rows)
    assert [(f.state, f.ts) for f in found] == [("raised", T0 + 4), ("cleared", T0 + 18)]
    assert found[0].evidence["fields"]["vibration_rms"]["value"] == 0.9


def test_stuck_sensor_counts_only_when_moving() -> None:
    m = monitor("elevator", "stuck_sensor", {"window": 5})
    rows = [(T0 + i, {"moving": 0.0, "load_kg": 80.0, "motor_current_a": 0.0}) for i in range(20)]
    assert feed(m, "elevator", rows) == []
    rows = [(T0 + 20 + i, {"moving": 1.0, "load_kg": 80.0, "motor_current_a": 20.0 + i})
            for i in range(6)]
    assert states(feed(m, "elevator", rows)) == ["raised"]
    rows = [(T0 + 30, {"moving": 1.0, "load_kg": 81.0, "motor_current_a": 21.0})]
    assert states(feed(m, "elevator", rows)) == ["cleared"]


def test_rate_of_change() -> None:
    m = monitor("water_pump", "rate_of_change")
    rows = [(T0 + i, {"pressure_bar": 2.0 + 0.01 * i}) for i in range(10)]
    assert feed(m, "water_pump", rows) == []
    found = feed(m, "water_pump", [(T0 + 10, {"pressure_bar": 5.0})])
    assert states(found) == ["raised"]
    rows = [(T0 + 11 + i, {"pressure_bar": 5.0}) for i in range(70)]
    assert states(feed(m, "water_pump", rows)) == ["cleared"]


def test_trend_forecasts_hours_to_limit_within_ten_percent() -> None:
    m = monitor("water_pump", "trend")
    rng = random.Random(5)
    slope_per_s = (0.5 - 0.1) / (20 * 3600)  # reaches the 0.5 g limit 20 h after T0
    found: list[Finding] = []
    for i in range(4 * 3600):
        v = 0.1 + slope_per_s * i
        found += feed(m, "water_pump", [(T0 + i, {"accel1_rms": v + rng.gauss(0, 0.002),
                                                  "accel2_rms": 0.1 + rng.gauss(0, 0.002),
                                                  "current_a": 2.0})])
        if found:
            break
    assert found and found[0].event_type == "pump.bearing_wear"
    f = found[0]
    assert f.forecast is not None and f.forecast.field == "accel1_rms"
    truth_h = (T0 + 20 * 3600 - f.ts) / 3600
    assert abs(f.forecast.hours_to_limit - truth_h) / truth_h < 0.10


def test_trend_silent_on_flat_noise() -> None:
    m = monitor("water_pump", "trend")
    rng = random.Random(6)
    rows = [(T0 + i, {"accel1_rms": 0.1 + rng.gauss(0, 0.01), "accel2_rms": 0.1,
                      "current_a": 2.0}) for i in range(6 * 3600)]
    assert feed(m, "water_pump", rows) == []


def test_trend_ignores_samples_outside_the_operating_state() -> None:
    m = monitor("water_pump", "trend")
    rows = [(T0 + i, {"accel1_rms": 0.1 + 0.0001 * i, "accel2_rms": 0.1, "current_a": 0.0})
            for i in range(4 * 3600)]
    assert feed(m, "water_pump", rows) == []


# pumps -----------------------------------------------------------------------------------

def pump_row(rng: random.Random, current: float = 1.0, vib: float = 0.03,
             pressure: float = 3.0, flow: float = 30.0) -> dict[str, float]:
    return {"current_a": current + rng.gauss(0, 0.02), "accel1_rms": vib + rng.gauss(0, 0.001),
            "accel2_rms": vib + rng.gauss(0, 0.001), "pressure_bar": pressure + rng.gauss(0, 0.02),
            "flow_lpm": flow + rng.gauss(0, 0.3)}


def test_pump_rules_dry_running_cavitation_and_leak() -> None:
    rng = random.Random(7)
    m = monitor("water_pump", "pump_rules")
    t = T0
    rows = []
    for _ in range(600):
        rows.append((t, pump_row(rng)))
        t += 1
    assert feed(m, "water_pump", rows) == []
    dry = [(t + i, pump_row(rng, current=0.5, flow=1.0, pressure=0.3)) for i in range(60)]
    t += 60
    found = feed(m, "water_pump", dry)
    assert states(found, "pump.dry_running") == ["raised"]
    back = [(t + i, pump_row(rng)) for i in range(400)]
    t += 400
    assert states(feed(m, "water_pump", back), "pump.dry_running") == ["cleared"]
    cav = [(t + i, pump_row(rng, vib=0.08, pressure=2.0, flow=22.0)) for i in range(120)]
    t += 120
    assert states(feed(m, "water_pump", cav), "pump.cavitation") == ["raised"]
    idle = [(t + i, pump_row(rng, current=0.0, vib=0.0, flow=0.0, pressure=3.0 - 0.005 * i))
            for i in range(600)]
    assert "raised" in states(feed(m, "water_pump", idle), "pump.leak")


def test_pump_leak_silent_when_idle_pressure_holds() -> None:
    rng = random.Random(8)
    m = monitor("water_pump", "pump_rules")
    rows = [(T0 + i, pump_row(rng)) for i in range(400)]
    rows += [(T0 + 400 + i, pump_row(rng, current=0.0, vib=0.0, flow=0.0)) for i in range(1200)]
    assert feed(m, "water_pump", rows) == []


def test_pump_model_learns_normal_then_flags_a_shift() -> None:
    rng = random.Random(9)
    m = monitor("water_pump", "pump_model", {"warmup": 400})
    rows = [(T0 + i, {**pump_row(rng), "voltage_v": 230 + rng.gauss(0, 1)}) for i in range(800)]
    assert feed(m, "water_pump", rows) == []
    shifted = [(T0 + 800 + i, {**pump_row(rng, flow=24.0), "voltage_v": 230 + rng.gauss(0, 1)})
               for i in range(30)]
    assert states(feed(m, "water_pump", shifted)) == ["raised"]


# elevators -------------------------------------------------------------------------------

def lift(**kw: float) -> dict[str, float]:
    base = {"floor": 3.0, "at_landing": 1.0, "moving": 0.0, "door_open": 0.0, "load_kg": 0.0,
            "door_cycle_s": 5.0, "door_reversals": 0.0, "door_close_failures": 0.0}
    base.update(kw)
    return base


def test_entrapment_after_the_limit_with_episode_from_the_stop() -> None:
    m = monitor("elevator", "elevator_rules")
    rows = [(T0 + 2 * i, lift(at_landing=0.0, load_kg=75.0)) for i in range(40)]
    found = [f for f in feed(m, "elevator", rows) if f.event_type == "elevator.entrapment"]
    assert [f.state for f in found] == ["raised"]
    assert found[0].ts == T0 + 60 and found[0].episode_start == T0 + 60
    out = feed(m, "elevator", [(T0 + 100, lift(at_landing=0.0, load_kg=75.0, door_open=1.0))])
    assert states(out, "elevator.entrapment") == ["cleared"]


def test_empty_car_between_floors_is_not_entrapment() -> None:
    m = monitor("elevator", "elevator_rules")
    rows = [(T0 + 2 * i, lift(at_landing=0.0, load_kg=0.0)) for i in range(100)]
    assert states(feed(m, "elevator", rows), "elevator.entrapment") == []


def test_door_fault_on_slow_cycles_and_reversals() -> None:
    m = monitor("elevator", "elevator_rules")
    assert feed(m, "elevator", [(T0 + 2 * i, lift()) for i in range(10)]) == []
    one_slow = feed(m, "elevator", [(T0 + 20, lift(door_cycle_s=14.0))])
    assert states(one_slow, "elevator.door_fault") == []
    slow = [(T0 + 21 + i, lift(door_cycle_s=14.0)) for i in range(2)]
    assert states(feed(m, "elevator", slow), "elevator.door_fault") == ["raised"]
    calm = [(T0 + 22 + 2 * i, lift()) for i in range(500)]
    assert states(feed(m, "elevator", calm), "elevator.door_fault") == ["cleared"]
    m2 = monitor("elevator", "elevator_rules")
    rows = [(T0 + 2 * i, lift(door_reversals=1.0)) for i in range(3)]
    assert states(feed(m2, "elevator", rows), "elevator.door_fault") == ["raised"]


def test_leveling_error_needs_repeated_bad_stops() -> None:
    m = monitor("elevator", "elevator_rules")
    rows: list[tuple[float, dict[str, float]]] = []
    t = T0
    for err in (3.0, 20.0, 2.0, 20.0, 22.0, 1.0, 1.0, 1.0):
        rows.append((t, lift(moving=1.0, at_landing=0.0)))
        rows.append((t + 2, lift(leveling_error_mm=err)))
        rows.append((t + 4, lift(leveling_error_mm=err)))
        t += 6
    found = feed(m, "elevator", rows)
    assert states(found, "elevator.leveling_error") == ["raised", "cleared"]


# meters ----------------------------------------------------------------------------------

def meter_rows(days: float, power: Callable[[float], float], start: float = T0,
               ) -> list[tuple[float, dict[str, float]]]:
    rows = []
    energy = 1000.0
    for i in range(int(days * 1440)):
        ts = start + 60 * i
        p = power(ts)
        energy += p / 60
        rows.append((ts, {"power_kw": p, "energy_kwh": energy}))
    return rows


def daily(ts: float) -> float:
    h = (ts / 3600) % 24
    return 1.0 + 2.0 * math.exp(-((h - 19) ** 2) / 4)


def test_meter_energy_spike_against_hour_of_week_baseline() -> None:
    m = monitor("smart_meter", "meter_baseline")
    assert feed(m, "smart_meter", meter_rows(2 + 10 / 24, daily)) == []
    spike = meter_rows(0.05, lambda ts: daily(ts) * 3 + 2, start=T0 + 2 * 86400 + 10 * 3600)
    assert states(feed(m, "smart_meter", spike)) == ["raised"]


def test_meter_baseline_keeps_weekends_apart() -> None:
    m = monitor("smart_meter", "meter_baseline")
    weekend_bump = meter_rows(4.9, lambda ts: daily(ts) * (3.0 if ts >= T0 + 3 * 86400 else 1))
    assert feed(m, "smart_meter", weekend_bump) == []


def test_meter_night_base_load_only_for_common_areas() -> None:
    def leak_from_day4(ts: float) -> float:
        return daily(ts) + (2.0 if ts > T0 + 3 * 86400 else 0.0)

    m = monitor("smart_meter", "meter_night_load", device_params={"common_area": True})
    found = feed(m, "smart_meter", meter_rows(5, leak_from_day4))
    assert states(found) == ["raised"]
    assert found[0].ts > T0 + 3 * 86400
    other = monitor("smart_meter", "meter_night_load")
    assert feed(other, "smart_meter", meter_rows(5, leak_from_day4)) == []


def test_meter_plan_deviation_with_a_device_plan() -> None:
    m = monitor("smart_meter", "meter_plan", device_params={"daily_plan_kwh": 36.0})
    found = feed(m, "smart_meter", meter_rows(3.1, lambda ts: 1.5))
    assert found == []
    found = feed(m, "smart_meter", meter_rows(2.1, lambda ts: 2.0, start=T0 + 3.1 * 86400))
    assert states(found) == ["raised"]
    assert abs(found[0].evidence["deviation"] - 1 / 3) < 0.02


def test_meter_voltage_sag_and_phase_imbalance() -> None:
    m = monitor("smart_meter", "meter_power_quality")
    ok = {"voltage_l1_v": 230.0, "voltage_l2_v": 231.0, "voltage_l3_v": 229.0,
          "current_l1_a": 10.0, "current_l2_a": 11.0, "current_l3_a": 9.0}
    assert feed(m, "smart_meter", [(T0 + 60 * i, ok) for i in range(10)]) == []
    sag = {**ok, "voltage_l2_v": 195.0}
    found = feed(m, "smart_meter", [(T0 + 600 + 60 * i, sag) for i in range(4)])
    assert states(found, "meter.voltage_sag") == ["raised"]
    imb = {**ok, "current_l1_a": 20.0, "current_l2_a": 5.0, "current_l3_a": 5.0}
    found = feed(m, "smart_meter", [(T0 + 900 + 60 * i, imb) for i in range(4)])
    assert states(found, "meter.phase_imbalance") == ["raised"]


# gates -----------------------------------------------------------------------------------

def gate(**kw: float) -> dict[str, float]:
    base = {"door_open": 0.0, "door_open_s": 0.0, "passages": 0.0, "grants": 0.0, "denials": 0.0}
    base.update(kw)
    return base


def test_gate_brute_force_and_forced_open() -> None:
    m = monitor("access_gate", "gate_rules")
    rows = [(T0 + 5 * i, gate(denials=2.0)) for i in range(3)]
    assert states(feed(m, "access_gate", rows), "gate.brute_force") == ["raised"]
    m2 = monitor("access_gate", "gate_rules")
    rows = [(T0, gate(grants=1.0, door_open=1.0, door_open_s=1.0, passages=1.0)),
            (T0 + 5, gate())]
    assert feed(m2, "access_gate", rows) == []
    found = feed(m2, "access_gate", [(T0 + 100, gate(door_open=1.0, door_open_s=2.0))])
    assert states(found, "gate.forced_open") == ["raised"]


def test_gate_held_open_and_tailgating() -> None:
    m = monitor("access_gate", "gate_rules")
    rows = [(T0 + 5 * i, gate(door_open=1.0, door_open_s=5.0 * i, grants=1.0 if i == 0 else 0))
            for i in range(14)]
    found = feed(m, "access_gate", rows)
    assert states(found, "gate.held_open") == ["raised"]
    assert states(feed(m, "access_gate", [(T0 + 80, gate())]), "gate.held_open") == ["cleared"]
    m2 = monitor("access_gate", "gate_rules")
    rows = [(T0 + 5 * i, gate(grants=1.0, passages=2.0 if i % 2 else 1.0, door_open=1.0,
                              door_open_s=2.0)) for i in range(6)]
    assert states(feed(m2, "access_gate", rows), "gate.tailgating") == ["raised"]


def test_pump_model_leaves_out_a_channel_the_pump_does_not_have() -> None:
    rng = random.Random(10)
    m = monitor("water_pump", "pump_model", {"warmup": 400})
    rows = []
    for i in range(800):
        row = {**pump_row(rng), "voltage_v": 230 + rng.gauss(0, 1)}
        del row["flow_lpm"]
        rows.append((T0 + i, row))
    assert feed(m, "water_pump", rows) == []
    shifted = [(T0 + 800 + i, {**pump_row(rng, pressure=2.5), "voltage_v": 230.0})
               for i in range(30)]
    for _, row in shifted:
        del row["flow_lpm"]
    assert states(feed(m, "water_pump", shifted)) == ["raised"]


def test_offline_silence_is_measured_on_the_tick_clock_not_against_lagging_data() -> None:
    """A backlog of old readings drained after an outage must not flip the device offline."""
    m = monitor("water_pump", "offline")
    now = T0 + 3600.0
    for i in range(5):
        feed(m, "water_pump", [(T0 + i, {"current_a": 1.0})])
        assert m.tick(now + i) == []
    assert m.tick(now + 29) == []
    (raised,) = m.tick(now + 40)
    assert raised.state == "raised" and raised.episode_start == T0 + 4 + 30


def test_offline_with_data_ahead_of_the_clock_still_sees_silence() -> None:
    """An accelerated simulator (or a fast device clock) goes quiet: offline is still seen."""
    m = monitor("water_pump", "offline")
    feed(m, "water_pump", [(T0 + 500, {"current_a": 1.0})])
    assert m.tick(T0) == []
    assert m.tick(T0 + 29) == []
    (raised,) = m.tick(T0 + 31)
    assert raised.state == "raised"
