"""A booster water pump running duty cycles, at the signal levels of the SKAB testbed.

Running: vibration ~0.027 g (drive end) and ~0.040 g (motor end), current ~2.3 A,
pressure ~3.9 bar, flow ~120 L/min, motor warming toward ~70 degC. Idle: vibration
(~0.003 g) and current near zero, no flow, and the closed system holding its pressure a few
tenths of a bar below the running pressure (a leak makes it decay).
Runs are long by day (15-45 min, short pauses) and short at night; ``params.duty:
continuous`` on the device keeps it running. Transitions are soft (a drive ramp), so a
healthy start never trips the rate-of-change detector.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from simulators.models.base import DeviceModel, FaultSpec, first_order, ramp_fraction
from simulators.models.daily import daytime, hour_of_day

IDLE_ACCEL_G = 0.003
CUT_IN_BAR = 1.2
"""A leak drains the idle riser until the controller restarts the pump at this pressure."""


class WaterPumpModel(DeviceModel):
    kind = "water_pump"
    fault_types = ("pump.bearing_wear", "pump.cavitation", "pump.dry_running", "pump.leak")
    trend_limits: ClassVar[dict[str, str]] = {"pump.bearing_wear": "accel1_rms"}
    default_params: ClassVar[dict[str, dict[str, Any]]] = {
        "pump.bearing_wear": {"ramp": 6 * 3600.0},
        "pump.cavitation": {"severity": 1.0},
        "pump.dry_running": {},
        "pump.leak": {"rate_bar_per_min": 0.3},
    }
    default_durations: ClassVar[dict[str, float]] = {
        "pump.cavitation": 900.0,
        "pump.dry_running": 300.0,
        "pump.leak": 1800.0,
    }

    def __init__(
        self, device: DeviceConfig, profile: DeviceProfile, rng: np.random.Generator
    ) -> None:
        super().__init__(device, profile, rng)
        n = self.noise
        self.accel1_base = n.uniform(0.024, 0.030)
        self.accel2_base = n.uniform(0.036, 0.044)
        self.current_base = n.uniform(2.0, 2.6)
        self.flow_base = n.uniform(110.0, 130.0)
        self.p_run = n.uniform(3.7, 4.1)
        self.p_hold = self.p_run - n.uniform(0.2, 0.4)
        self.continuous = str(device.params.get("duty", "")) == "continuous"
        self.running = n.chance(0.7) or self.continuous
        self.phase_left = n.uniform(30.0, 900.0)
        self.pressure = self.p_run if self.running else self.p_hold
        self.current = self.current_base if self.running else 0.05
        self.flow = self.flow_base if self.running else 0.0
        self.motor_temp = 65.0 if self.running else 30.0
        self.spin = 1.0 if self.running else 0.0
        self.water_temp = n.uniform(16.0, 22.0)
        self.leak_restart_left = 0.0

    def _complete(self, spec: FaultSpec) -> FaultSpec:
        if spec.type != "pump.bearing_wear":
            return spec
        params = dict(spec.params)
        params["baseline"] = round(self.accel1_base, 5)
        params["slope_per_hour"] = (float(params["limit"]) - self.accel1_base) / (
            float(params["ramp"]) / 3600.0
        )
        return FaultSpec(spec.device_id, spec.type, spec.start, spec.end, params)

    def _schedule(self, ts: float) -> float:
        """Length of the next run or pause, by time of day."""
        n = self.noise
        day = daytime(ts) > 0.5 and not 0 <= hour_of_day(ts) < 6
        if self.running:
            return n.uniform(900.0, 2700.0) if day else n.uniform(300.0, 900.0)
        return n.uniform(120.0, 480.0) if day else n.uniform(600.0, 1800.0)

    def _advance(
        self, ts: float, dt: float, active: dict[str, FaultSpec]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        n = self.noise
        cav = active.get("pump.cavitation")
        dry = active.get("pump.dry_running")
        leak = active.get("pump.leak")
        wear = active.get("pump.bearing_wear")

        if cav is not None or dry is not None or self.continuous:
            self.running = True
        elif leak is not None:
            if self.running and self.leak_restart_left <= 0:
                self.running = False
            elif not self.running and self.pressure < CUT_IN_BAR:
                self.running = True
                self.leak_restart_left = 60.0
            self.leak_restart_left -= dt
        else:
            self.phase_left -= dt
            if self.phase_left <= 0:
                self.running = not self.running
                self.phase_left = self._schedule(ts)

        if self.running:
            p_target, i_target, q_target, t_target = (
                self.p_run,
                self.current_base,
                self.flow_base,
                68.0,
            )
            a1 = (self.accel1_base - IDLE_ACCEL_G) * (1 + n.normal(0, 0.015))
            a2 = (self.accel2_base - IDLE_ACCEL_G) * (1 + n.normal(0, 0.02))
            if wear is not None:
                frac = (ts - wear.start) / float(wear.params["ramp"])
                rise = (float(wear.params["limit"]) - self.accel1_base) * frac
                a1 += rise * (1 + n.normal(0, 0.02))
                a2 += 0.3 * rise * (1 + n.normal(0, 0.02))
                t_target += 8.0 * min(frac, 1.5)
            if cav is not None:
                sev = float(cav.params["severity"]) * ramp_fraction(cav, ts)
                p_target *= 1 - 0.4 * sev
                q_target *= 1 - 0.4 * sev
                i_target *= 1 - 0.05 * sev
                a1 *= 1 + sev * (1.5 + abs(n.normal(0, 0.6)))
                a2 *= 1 + sev * (1.0 + abs(n.normal(0, 0.5)))
            if dry is not None:
                p_target, q_target, i_target, t_target = 0.1, 0.0, 0.4 * self.current_base, 98.0
                a1 *= 1.5 + abs(n.normal(0, 0.2))
                a2 *= 1.3 + abs(n.normal(0, 0.2))
        else:
            p_target, i_target, q_target, t_target = self.p_hold, 0.05, 0.0, 30.0
            a1 = self.accel1_base - IDLE_ACCEL_G
            a2 = self.accel2_base - IDLE_ACCEL_G
        # The impeller spins up and coasts down with the drive: vibration, current and flow
        # move together, so a stopping pump never looks like a dry-running one.
        self.spin = first_order(self.spin, 1.0 if self.running else 0.0, dt, 1.5)
        a1 = IDLE_ACCEL_G + n.normal(0, 0.0003) + self.spin * a1
        a2 = IDLE_ACCEL_G + n.normal(0, 0.0003) + self.spin * a2

        if not self.running and leak is not None:
            rate = float(leak.params["rate_bar_per_min"]) / 60.0
            self.pressure = max(0.0, self.pressure - rate * dt)
        else:
            self.pressure = first_order(self.pressure, p_target, dt, 5.0 if self.running else 1.5)
        self.current = first_order(self.current, i_target, dt, 1.5)
        self.flow = first_order(self.flow, q_target, dt, 1.5)
        self.motor_temp = first_order(self.motor_temp, t_target, dt, 900.0)
        water_target = 19.0 + 3.0 * daytime(ts)
        self.water_temp = first_order(self.water_temp, water_target, dt, 3600.0)

        flow_noise = 8.0 if cav is not None else 1.2
        values: dict[str, float] = {
            "accel1_rms": round(min(4.9, max(0.0, a1)), 5),
            "accel2_rms": round(min(4.9, max(0.0, a2)), 5),
            "current_a": round(max(0.0, self.current + n.normal(0, 0.06)), 4),
            "pressure_bar": round(self.pressure + n.normal(0, 0.03), 4),
            "temperature_c": round(self.motor_temp + n.normal(0, 0.15), 3),
            "thermocouple_c": round(self.water_temp + n.normal(0, 0.05), 3),
            "voltage_v": round(230.0 + n.normal(0, 3.0), 2),
            "flow_lpm": round(
                max(0.0, self.flow + (n.normal(0, flow_noise) if self.flow > 1 else 0.0)), 3
            ),
        }
        return values, []
