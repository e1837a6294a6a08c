"""A three-phase smart meter: a dwelling or a common area (``params.common_area``).

Dwellings follow the residential curve: a base load of 0.15-0.35 kW, a morning bump and an
evening peak around 19-20 h (flatter and later at weekends), with small appliance blips
that stay below the energy-spike detector's minimum excess. Common areas are flatter with a
steady night base load (lighting, ventilation). Voltages sit around 230 V with a small
per-phase offset, a dip at the evening peak and noise; currents follow from the power,
the voltage and the power factor, split nearly evenly across phases.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from simulators.models.base import DeviceModel, FaultError, FaultSpec
from simulators.models.daily import bump, daytime, hour_of_day, is_weekend

NOMINAL_V = 230.0


class SmartMeterModel(DeviceModel):
    kind = "smart_meter"
    fault_types = (
        "meter.energy_spike",
        "meter.night_base_load",
        "meter.voltage_sag",
        "meter.phase_imbalance",
    )
    default_params: ClassVar[dict[str, dict[str, Any]]] = {
        "meter.energy_spike": {"factor": 4.0, "add_kw": 3.0},
        "meter.night_base_load": {"ratio": 1.5},
        "meter.voltage_sag": {"depth": 0.85},
        "meter.phase_imbalance": {"shares": "1.9,0.6,0.5"},
    }
    default_durations: ClassVar[dict[str, float]] = {
        "meter.energy_spike": 1800.0,
        "meter.night_base_load": 3 * 86400.0,
        "meter.voltage_sag": 600.0,
        "meter.phase_imbalance": 1800.0,
    }

    def __init__(
        self, device: DeviceConfig, profile: DeviceProfile, rng: np.random.Generator
    ) -> None:
        super().__init__(device, profile, rng)
        n = self.noise
        self.common = bool(device.params.get("common_area", False))
        if self.common:
            self.base_kw = n.uniform(3.0, 6.0)
            self.energy = n.uniform(50_000.0, 400_000.0)
            self.pf = n.uniform(0.88, 0.93)
        else:
            self.base_kw = n.uniform(0.15, 0.35)
            self.energy = n.uniform(2_000.0, 40_000.0)
            self.pf = n.uniform(0.94, 0.98)
        self.scale = n.uniform(0.7, 1.4)
        self.v_offset = [n.normal(0, 2.0) for _ in range(3)]
        self.blip_left = 0.0
        self.blip_kw = 0.0

    def _complete(self, spec: FaultSpec) -> FaultSpec:
        if spec.type == "meter.phase_imbalance":
            _shares(spec)
        return spec

    def normal_kw(self, ts: float) -> float:
        """Expected load at ``ts`` without faults or blips (the meter's own baseline)."""
        if self.common:
            return self.base_kw * _common_shape(int(ts // 60))
        return self.base_kw + self.scale * _dwelling_shape(int(ts // 60))

    def _advance(
        self, ts: float, dt: float, active: dict[str, FaultSpec]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        n = self.noise
        expected = self.normal_kw(ts)
        power = expected * (1.0 + n.normal(0, 0.03 if self.common else 0.08))
        if not self.common:
            if self.blip_left > 0:
                self.blip_left -= dt
            elif n.chance(0.02 * dt / 60.0):
                self.blip_left = n.uniform(60.0, 240.0)
                self.blip_kw = n.uniform(0.2, 0.7)
            if self.blip_left > 0:
                power += self.blip_kw
        spike = active.get("meter.energy_spike")
        if spike is not None:
            power = power * float(spike.params["factor"]) + float(spike.params["add_kw"])
        night = active.get("meter.night_base_load")
        if night is not None:
            night_base = self.normal_kw(ts - hour_of_day(ts) * 3600.0 + 3 * 3600.0)
            power += float(night.params["ratio"]) * night_base + 0.3
        power = max(0.0, power)
        self.energy += power * dt / 3600.0

        h = hour_of_day(ts)
        dip = 4.0 * bump(h, 19.5, 1.5) - 2.0 * bump(h, 3.0, 2.0)
        volts = [NOMINAL_V - dip + off + n.normal(0, 0.8) for off in self.v_offset]
        sag = active.get("meter.voltage_sag")
        if sag is not None:
            depth = float(sag.params["depth"])
            volts = [NOMINAL_V * depth + n.normal(0, 1.0) for _ in volts]
        imbalance = active.get("meter.phase_imbalance")
        if imbalance is not None:
            shares = _shares(imbalance)
        else:
            shares = [1.0 + n.normal(0, 0.04) for _ in range(3)]
        total = sum(shares)
        pf = min(1.0, self.pf + n.normal(0, 0.005))
        currents = [
            max(0.0, power * 1000.0 * (s / total) / (v * pf))
            for s, v in zip(shares, volts, strict=True)
        ]
        values: dict[str, float] = {
            "power_kw": round(power, 4),
            "energy_kwh": round(self.energy, 3),
            "voltage_l1_v": round(volts[0], 1),
            "voltage_l2_v": round(volts[1], 1),
            "voltage_l3_v": round(volts[2], 1),
            "current_l1_a": round(currents[0], 3),
            "current_l2_a": round(currents[1], 3),
            "current_l3_a": round(currents[2], 3),
            "power_factor": round(pf, 3),
        }
        return values, []


def _shares(spec: FaultSpec) -> list[float]:
    """The three phase shares of a phase-imbalance fault (``"1.9,0.6,0.5"``)."""
    text = str(spec.params["shares"])
    try:
        shares = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise FaultError(f"{spec.type}: shares must be three numbers, got {text!r}") from exc
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0:
        raise FaultError(f"{spec.type}: shares must be three non-negative numbers, got {text!r}")
    return shares


@lru_cache(maxsize=4096)
def _dwelling_shape(minute: int) -> float:
    """The residential load shape (kW above base per unit scale) of one minute."""
    ts = minute * 60.0
    h = hour_of_day(ts)
    if is_weekend(ts):
        return 0.9 * bump(h, 10.0, 1.8) + 0.6 * daytime(ts) + 1.6 * bump(h, 19.0, 1.8)
    return 0.8 * bump(h, 7.3, 0.8) + 0.25 * daytime(ts) + 1.8 * bump(h, 19.5, 1.5)


@lru_cache(maxsize=4096)
def _common_shape(minute: int) -> float:
    """Common-area multiplier of the base load: lights at night, a little more by day."""
    day = daytime(minute * 60.0)
    return 1.0 + 0.35 * (1.0 - day) + 0.25 * day
