"""A passenger elevator serving landing calls, busier at rush hours.

Calls arrive as a Poisson stream (a few an hour at night, about two a minute at the
morning and evening rush); in the morning most go down to the ground floor, in the evening
most go up from it. The car serves one call at a time: it runs to the caller's floor,
cycles its door (5-7 s) while people board, runs to the destination (1.75 m/s, 0.8 m/s2,
3 m per floor) and cycles the door again while they leave. Floors are 0 (ground) to
``floors - 1``.

``door_cycle_s`` is sent once per completed door cycle, in the message that follows it, and
left out of the others, so a trend over it sees one point per cycle rather than a staircase
of repeated values.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar

import numpy as np

from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from simulators.models.base import DeviceModel, FaultSpec, ramp_fraction
from simulators.models.daily import daytime, rush_profile

FLOOR_M = 3.0
V_MAX = 1.75
ACCEL = 0.8
OPEN_DELAY_S = 0.8
CLOSE_TIME_S = 1.2
MAX_QUEUE = 10


class ElevatorModel(DeviceModel):
    kind = "elevator"
    fault_types = (
        "elevator.entrapment",
        "elevator.door_fault",
        "elevator.door_wear",
        "elevator.leveling_error",
        "elevator.abnormal_vibration",
    )
    trend_limits: ClassVar[dict[str, str]] = {"elevator.door_wear": "door_cycle_s"}
    default_params: ClassVar[dict[str, dict[str, Any]]] = {
        "elevator.door_fault": {"ramp": 600.0, "extra_s": 8.0, "reversals": 4.0, "failure_p": 0.3},
        "elevator.door_wear": {"ramp": 3 * 86400.0},
        "elevator.leveling_error": {"mm": 25.0},
        "elevator.abnormal_vibration": {"vibration": 1.1, "current_add_a": 55.0},
        "elevator.entrapment": {},
    }
    default_durations: ClassVar[dict[str, float]] = {
        "elevator.entrapment": 300.0,
        "elevator.door_fault": 1800.0,
        "elevator.leveling_error": 1800.0,
        "elevator.abnormal_vibration": 900.0,
    }

    def __init__(
        self,
        device: DeviceConfig,
        profile: DeviceProfile,
        rng: np.random.Generator,
        *,
        floors: int | None = None,
    ) -> None:
        super().__init__(device, profile, rng)
        n = self.noise
        self.floors = max(2, int(floors or device.params.get("floors", 18)))
        self.door_base = n.uniform(5.2, 6.2)
        self.busyness = n.uniform(0.8, 1.2)  # drawn even when set, so seeds stay put
        if "busyness" in device.params:
            self.busyness = _busyness(device)
        self.pos = float(int(n.uniform(0, self.floors)))
        self.load = 0.0
        self.phase = "idle"
        self.phase_t = 0.0
        self.phase_len = 0.0
        self.move_from = self.pos
        self.move_to = self.pos
        self.door_delta = 0.0
        self.plan: deque[tuple[str, float]] = deque()
        self.calls: deque[tuple[int, int, float]] = deque()
        self.last_cycle: float | None = None
        self.last_level_mm = 0.0
        self.reversals = 0
        self.close_failures = 0
        self.trips = 0

    def _complete(self, spec: FaultSpec) -> FaultSpec:
        if spec.type != "elevator.door_wear":
            return spec
        params = dict(spec.params)
        params["baseline"] = round(self.door_base, 3)
        params["slope_per_hour"] = (float(params["limit"]) - self.door_base) / (
            float(params["ramp"]) / 3600.0
        )
        return FaultSpec(spec.device_id, spec.type, spec.start, spec.end, params)

    def call_rate(self, ts: float) -> float:
        """Landing calls per second at ``ts``."""
        morning, evening = rush_profile(ts)
        return self.busyness * (0.001 + 0.008 * daytime(ts) + 0.03 * max(morning, evening))

    def _new_call(self, ts: float) -> tuple[int, int, float]:
        n = self.noise
        top = self.floors - 1
        morning, evening = rush_profile(ts)
        upper = 1 + int(n.uniform(0, top))
        if morning > 0.3 and n.chance(0.8):
            origin, dest = upper, 0
        elif evening > 0.3 and n.chance(0.8):
            origin, dest = 0, upper
        else:
            origin = int(n.uniform(0, self.floors))
            dest = int(n.uniform(0, self.floors))
            if dest == origin:
                dest = 0 if origin != 0 else upper
        people = 1 + (1 if n.chance(0.25) else 0) + (1 if n.chance(0.1) else 0)
        weight = sum(max(20.0, n.normal(75.0, 15.0)) for _ in range(people))
        return origin, dest, weight

    def _door_cycle(self, ts: float, active: dict[str, FaultSpec]) -> float:
        n = self.noise
        cycle = self.door_base + n.normal(0, 0.25)
        if n.chance(0.03):
            self.reversals += 1
            cycle += 1.5
        wear = active.get("elevator.door_wear")
        if wear is not None:
            frac = (ts - wear.start) / float(wear.params["ramp"])
            cycle += (float(wear.params["limit"]) - self.door_base) * frac
        fault = active.get("elevator.door_fault")
        if fault is not None:
            sev = ramp_fraction(fault, ts)
            cycle += sev * float(fault.params["extra_s"]) * (1 + n.normal(0, 0.1))
            extra_rev = n.poisson(sev * float(fault.params["reversals"]))
            self.reversals += extra_rev
            cycle += 1.0 * extra_rev
            if n.chance(sev * float(fault.params["failure_p"])):
                self.close_failures += 1
                cycle += 3.0
        return max(3.0, min(110.0, cycle))

    def _start_next(self, ts: float, active: dict[str, FaultSpec]) -> bool:
        """Begin the next planned action; ``False`` when there is nothing to do."""
        while True:
            if not self.plan:
                if not self.calls:
                    return False
                origin, dest, weight = self.calls.popleft()
                self.plan.extend(
                    [("move", origin), ("door", weight), ("move", dest), ("door", -weight)]
                )
            action, arg = self.plan.popleft()
            self.phase_t = 0.0
            if action == "move":
                if abs(arg - self.pos) < 1e-6:
                    continue
                self.move_from, self.move_to = self.pos, float(arg)
                self.phase = "move"
                self.phase_len = _run_time(abs(self.move_to - self.move_from) * FLOOR_M)
            else:
                self.phase = "door"
                self.door_delta = arg
                self.phase_len = self._door_cycle(ts, active)
            return True

    def _finish(self, active: dict[str, FaultSpec]) -> None:
        n = self.noise
        if self.phase == "move":
            self.pos = self.move_to
            self.trips += 1
            err = n.normal(0, 2.5)
            level = active.get("elevator.leveling_error")
            if level is not None:
                err += float(level.params["mm"]) + n.normal(0, 3.0)
            self.last_level_mm = err
        elif self.phase == "door":
            self.load = max(0.0, self.load + self.door_delta)
            if self.load < 15.0:
                self.load = 0.0
            self.last_cycle = round(self.phase_len, 2)
        self.phase = "idle"

    def _trap(self) -> None:
        base = math.floor(self.pos + 1e-6)
        frac = self.pos - base
        if frac < 0.1 or frac > 0.9:
            base = min(base, self.floors - 2)
            self.pos = base + 0.45
        if self.load < 20.0:
            self.load = max(50.0, self.noise.normal(75.0, 10.0))
        self.plan.clear()
        self.calls.clear()
        self.phase = "trapped"

    def _release(self) -> None:
        self.phase = "idle"
        self.plan.extend([("move", float(round(self.pos))), ("door", -self.load)])

    def _advance(
        self, ts: float, dt: float, active: dict[str, FaultSpec]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        n = self.noise
        trapped_now = "elevator.entrapment" in active
        if trapped_now and self.phase != "trapped":
            self._trap()
        elif not trapped_now and self.phase == "trapped":
            self._release()

        if self.phase != "trapped":
            for _ in range(n.poisson(self.call_rate(ts) * dt)):
                call = self._new_call(ts)
                if len(self.calls) < MAX_QUEUE:
                    self.calls.append(call)
            remaining = dt
            while remaining > 1e-9:
                if self.phase == "idle" and not self._start_next(ts, active):
                    break
                left = self.phase_len - self.phase_t
                if left > remaining:
                    self.phase_t += remaining
                    break
                remaining -= left
                self._finish(active)

        moving = self.phase == "move"
        speed = 0.0
        pos = self.pos
        if moving:
            dist = abs(self.move_to - self.move_from) * FLOOR_M
            s, v = _run_profile(dist, self.phase_t)
            sign = 1.0 if self.move_to > self.move_from else -1.0
            pos = self.move_from + sign * s / FLOOR_M
            speed = sign * v
        trapped = self.phase == "trapped"
        at_landing = not moving and not trapped
        door_open = (
            self.phase == "door" and OPEN_DELAY_S <= self.phase_t <= self.phase_len - CLOSE_TIME_S
        )
        floor = math.floor(pos) if trapped else round(pos)

        abnormal = active.get("elevator.abnormal_vibration")
        if moving:
            vib = 0.25 * (1 + n.normal(0, 0.12))
            current = 12.0 + 0.025 * abs(self.load - 450.0) + n.normal(0, 1.0)
            if abs(speed) < V_MAX - 0.05:
                current += 6.0
            if abnormal is not None:
                vib = float(abnormal.params["vibration"]) * (1 + n.normal(0, 0.08))
                current += float(abnormal.params["current_add_a"])
        elif trapped:
            vib = 0.01 + abs(n.normal(0, 0.003))
            current = 0.3 + abs(n.normal(0, 0.05))
        else:
            vib = 0.02 + abs(n.normal(0, 0.005))
            current = 1.5 + n.normal(0, 0.1)

        values: dict[str, float] = {}
        if self.last_cycle is not None:
            values["door_cycle_s"] = self.last_cycle
            self.last_cycle = None
        values |= {
            "floor": int(floor),
            "at_landing": 1 if at_landing else 0,
            "moving": 1 if moving else 0,
            "door_open": 1 if door_open else 0,
            "load_kg": round(max(0.0, self.load + n.normal(0, 0.6)), 1),
            "speed_mps": round(speed, 3),
            "door_reversals": self.reversals,
            "door_close_failures": self.close_failures,
            "leveling_error_mm": round(self.last_level_mm, 1),
            "vibration_rms": round(max(0.0, vib), 4),
            "motor_current_a": round(max(0.0, current), 2),
            "trips": self.trips,
        }
        self.reversals = self.close_failures = self.trips = 0
        return values, []


def _run_time(dist: float) -> float:
    """Seconds to run ``dist`` metres with trapezoidal (or triangular) speed."""
    if dist >= V_MAX * V_MAX / ACCEL:
        return dist / V_MAX + V_MAX / ACCEL
    return 2.0 * math.sqrt(dist / ACCEL)


def _run_profile(dist: float, t: float) -> tuple[float, float]:
    """(distance covered, speed) ``t`` seconds into a run of ``dist`` metres."""
    total = _run_time(dist)
    t = min(max(t, 0.0), total)
    if dist >= V_MAX * V_MAX / ACCEL:
        ta = V_MAX / ACCEL
        if t < ta:
            return 0.5 * ACCEL * t * t, ACCEL * t
        if t < total - ta:
            return 0.5 * V_MAX * ta + V_MAX * (t - ta), V_MAX
        r = total - t
        return dist - 0.5 * ACCEL * r * r, ACCEL * r
    tp = total / 2.0
    if t < tp:
        return 0.5 * ACCEL * t * t, ACCEL * t
    r = total - t
    return dist - 0.5 * ACCEL * r * r, ACCEL * r


def _busyness(device: DeviceConfig) -> float:
    """``params.busyness``: a number >= 0 scaling the car's traffic."""
    value = device.params["busyness"]
    try:
        busyness = float(value)
    except (TypeError, ValueError):
        busyness = -1.0
    if not 0.0 <= busyness < math.inf:
        raise ValueError(
            f"device {device.id}: params.busyness must be a number >= 0 (1 is a usual car, "
            f"4 a busy tower), not {value!r}"
        )
    return busyness
