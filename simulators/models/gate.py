"""A face-recognition access gate with rush-hour bursts.

People arrive as a Poisson stream whose rate peaks at 7-9 h and 17-20 h. Each is
recognised (about 4 % are denied once and try again), the door opens for a few seconds and
they pass: passages equal grants except for a rare extra passer (a child) or a person who
turns back. Counters are per message, as the profile says.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig
from simulators.models.base import DeviceModel, FaultSpec
from simulators.models.daily import daytime, rush_profile


class AccessGateModel(DeviceModel):
    kind = "access_gate"
    fault_types = (
        "gate.forced_open",
        "gate.brute_force",
        "gate.held_open",
        "gate.tailgating",
        "gate.tamper",
    )
    default_params: ClassVar[dict[str, dict[str, Any]]] = {
        "gate.brute_force": {"denials_per_s": 0.4},
        "gate.tailgating": {"every_s": 20.0, "extra": 3},
    }
    default_durations: ClassVar[dict[str, float]] = {
        "gate.forced_open": 30.0,
        "gate.brute_force": 120.0,
        "gate.held_open": 180.0,
        "gate.tailgating": 300.0,
        "gate.tamper": 60.0,
    }

    def __init__(
        self, device: DeviceConfig, profile: DeviceProfile, rng: np.random.Generator
    ) -> None:
        super().__init__(device, profile, rng)
        self.peak_rate = self.noise.uniform(0.05, 0.09)
        self.open_since: float | None = None
        self.open_until = 0.0
        self.forced_reported: set[float] = set()
        self.tamper_reported: set[float] = set()
        self.tailgate_left = 0.0

    def arrival_rate(self, ts: float) -> float:
        """People per second arriving at ``ts``."""
        morning, evening = rush_profile(ts)
        return self.peak_rate * max(morning, 0.8 * evening) + 0.008 * daytime(ts) + 0.0008

    def _open(self, t: float, hold: float) -> None:
        if self.open_since is None or t > self.open_until:
            self.open_since = t
            self.open_until = t + hold
        else:
            self.open_until = max(self.open_until, t + hold)

    def _advance(
        self, ts: float, dt: float, active: dict[str, FaultSpec]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        n = self.noise
        t0 = ts - dt
        passages = grants = denials = 0
        events: list[dict[str, Any]] = []
        forced = active.get("gate.forced_open")
        held = active.get("gate.held_open")
        brute = active.get("gate.brute_force")
        tail = active.get("gate.tailgating")
        tamper = active.get("gate.tamper")

        count = n.poisson(self.arrival_rate(ts) * dt)
        arrivals = sorted(t0 + n.uniform(0.0, dt) for _ in range(count))
        if forced is not None:
            arrivals = []
        for t in arrivals:
            while n.chance(0.04):
                denials += 1
            grants += 1
            if n.chance(0.01):
                continue
            passages += 1 + (1 if n.chance(0.005) else 0)
            self._open(t, n.uniform(3.0, 6.0))

        if brute is not None:
            denials += n.poisson(float(brute.params["denials_per_s"]) * dt)
        if tail is not None:
            self.tailgate_left -= dt
            if self.tailgate_left <= 0:
                self.tailgate_left = float(tail.params["every_s"])
                grants += 1
                passages += 1 + int(tail.params["extra"])
                self._open(ts - 0.5, 8.0)
        if forced is not None:
            if forced.start not in self.forced_reported:
                self.forced_reported.add(forced.start)
                events.append({"ts": round(max(forced.start, t0), 3), "type": "forced_open"})
                passages += 1
            if self.open_since is None or self.open_until < forced.start:
                self.open_since = max(forced.start, t0)
            self.open_until = max(self.open_until, forced.end)
        if held is not None:
            if self.open_since is None or self.open_until < held.start:
                self.open_since = max(held.start, t0)
            self.open_until = max(self.open_until, held.end)
        if tamper is not None and tamper.start not in self.tamper_reported:
            self.tamper_reported.add(tamper.start)
            events.append({"ts": round(max(tamper.start, t0), 3), "type": "tamper"})

        door_open = self.open_since is not None and self.open_since <= ts < self.open_until
        if not door_open and self.open_since is not None and ts >= self.open_until:
            self.open_since = None
        open_s = ts - self.open_since if door_open and self.open_since is not None else 0.0
        values: dict[str, float] = {
            "door_open": 1 if door_open else 0,
            "door_open_s": round(open_s, 2),
            "passages": passages,
            "grants": grants,
            "denials": denials,
            "tamper": 1 if tamper is not None else 0,
        }
        return values, events
