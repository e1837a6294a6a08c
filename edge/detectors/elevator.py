"""Elevators: entrapment, door faults and levelling error, from the controller's state."""

from __future__ import annotations

from device_profiles.messages import Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig
from edge.detectors.base import DetectorConfigError, Finding, MonitorBase, register
from edge.detectors.common import Episode, Params, condition_from, rule_event


class ElevatorRules(MonitorBase):
    """The rules an elevator engineer applies to the controller's state messages.

    * entrapment (critical): the car stands still off a landing with the door closed and a
      load above ``passenger_kg`` for ``entrapment_after_s``; the episode starts when the car
      stopped there (a data time). Clears as soon as the door opens, the car reaches a
      landing or the load leaves.
    * door fault: ``door_slow_cycles`` of the last ``door_slow_of`` door cycles (3 of 5)
      took longer than ``door_cycle_limit_s`` (one slow cycle is an obstruction), or at least
      ``reversals_per_cycle`` reversals within ``reversal_window_s``, or a failure to close.
      Clears after ``door_good_cycles`` (5) healthy door cycles in a row (no longer than
      ``door_cycle_clear_s``, default the limit minus 1 s) and
      ``door_clear_after_s`` without any fault (an idle door proves nothing).
    * levelling error: ``leveling_bad_stops`` consecutive stops at a landing with
      ``|leveling_error_mm|`` above ``leveling_limit_mm`` (default: the profile's warn band),
      or one stop beyond twice the limit. Clears after ``leveling_good_stops`` good stops.
    """

    __slots__ = (
        "_at_stop",
        "_bad_stops",
        "_bad_stops_needed",
        "_cycle_good",
        "_cycle_limit",
        "_door",
        "_entrap_after",
        "_entrapment",
        "_good_cycles",
        "_good_cycles_needed",
        "_good_stops",
        "_good_stops_needed",
        "_level_limit",
        "_leveling",
        "_passenger_kg",
        "_recent_slow",
        "_rev",
        "_rev_sum",
        "_rev_window",
        "_reversals",
        "_slow_needed",
        "_slow_of",
        "_stopped_since",
    )

    def __init__(self, spec: DetectorSpec, profile: DeviceProfile, device: DeviceConfig) -> None:
        p = Params(spec)
        self._entrap_after = p.number("entrapment_after_s", 60.0, lo=0.0)
        self._passenger_kg = p.number("passenger_kg", 20.0, lo=0.0)
        self._cycle_limit = p.number("door_cycle_limit_s", 9.0, lo=0.0)
        self._reversals = p.integer("reversals_per_cycle", 3, lo=1)
        self._rev_window = p.number("reversal_window_s", 30.0, lo=0.0)
        field = profile.fields.get("leveling_error_mm")
        default_limit = field.warn_high if field is not None and field.warn_high else 15.0
        self._level_limit = p.number("leveling_limit_mm", default_limit, lo=0.0)
        self._bad_stops_needed = p.integer("leveling_bad_stops", 2, lo=1)
        self._good_stops_needed = p.integer("leveling_good_stops", 3, lo=1)
        self._good_cycles_needed = p.integer("door_good_cycles", 5, lo=1)
        self._cycle_good = p.number("door_cycle_clear_s", self._cycle_limit - 1.0, lo=0.0)
        self._slow_needed = p.integer("door_slow_cycles", 3, lo=1)
        self._slow_of = p.integer("door_slow_of", 5, lo=1)
        if self._slow_needed > self._slow_of:
            raise DetectorConfigError("elevator_rules: door_slow_cycles exceeds door_slow_of")
        self._door = condition_from(
            p, rule_event(profile, "door_fault"), prefix="door_", clear_after_s=900.0,
            cooldown_s=300.0,
        )
        p.done()
        self._entrapment = Episode(rule_event(profile, "entrapment"))
        self._leveling = Episode(rule_event(profile, "leveling_error"))
        self._stopped_since: float | None = None
        self._rev: list[tuple[float, float]] = []
        """Reversal counts of the last ``reversal_window_s`` (a short list: rarely any)."""
        self._rev_sum = 0.0
        self._at_stop = False
        self._bad_stops = 0
        self._good_stops = 0
        self._good_cycles = 0
        self._recent_slow: list[bool] = []
        """Whether each of the last ``door_slow_of`` door cycles was slow."""

    def observe(self, reading: Reading) -> list[Finding]:
        v = reading.values
        ts = reading.ts
        out = self._entrapment_step(ts, v)
        out += self._door_step(ts, v)
        out += self._leveling_step(ts, v)
        return out

    def _entrapment_step(self, ts: float, v: dict[str, float]) -> list[Finding]:
        moving = v.get("moving", 0.0) > 0.5
        at_landing = v.get("at_landing", 1.0) > 0.5
        door_open = v.get("door_open", 0.0) > 0.5
        load = v.get("load_kg", 0.0)
        trapped = not moving and not at_landing and not door_open and load > self._passenger_kg
        if not trapped:
            self._stopped_since = None
            if not self._entrapment.active:
                return []  # no episode to clear: no evidence to build
            return self._entrapment.clear(ts, {"at_landing": at_landing, "door_open": door_open})
        if self._stopped_since is None:
            self._stopped_since = ts
        if ts - self._stopped_since >= self._entrap_after:
            evidence = {
                "stopped_since": self._stopped_since, "floor": v.get("floor"), "load_kg": load,
            }
            return self._entrapment.raise_(ts, evidence)
        return []

    def _door_step(self, ts: float, v: dict[str, float]) -> list[Finding]:
        reversals = v.get("door_reversals", 0.0)
        if reversals > 0:
            self._rev.append((ts, reversals))
            self._rev_sum += reversals
        while self._rev and self._rev[0][0] <= ts - self._rev_window:
            self._rev_sum -= self._rev.pop(0)[1]
        reported = v.get("door_cycle_s")
        cycle = reported if reported is not None else 0.0
        failures = v.get("door_close_failures", 0.0)
        reasons = []
        if reported is not None:
            self._recent_slow.append(reported > self._cycle_limit)
            if len(self._recent_slow) > self._slow_of:
                del self._recent_slow[0]
        if reported is not None and sum(self._recent_slow) >= self._slow_needed:
            reasons.append("slow_cycle")
        if self._rev_sum >= self._reversals:
            reasons.append("reversals")
        if failures > 0:
            reasons.append("close_failure")
        evidence = (
            {"reasons": reasons, "door_cycle_s": cycle, "reversals": self._rev_sum,
             "close_failures": failures}
            if reasons else None
        )
        if reasons:
            self._good_cycles = 0
        elif reported is not None and reported <= self._cycle_good:
            self._good_cycles += 1
        if self._door.episode.active and not reasons and (
            self._good_cycles < self._good_cycles_needed
        ):
            return []
        return self._door.update(ts, bool(reasons), evidence)

    def _leveling_step(self, ts: float, v: dict[str, float]) -> list[Finding]:
        error = v.get("leveling_error_mm")
        stopped = v.get("moving", 1.0) < 0.5 and v.get("at_landing", 0.0) > 0.5
        if not stopped or error is None:
            if not stopped:
                self._at_stop = False
            return []
        if self._at_stop:
            return []
        self._at_stop = True
        err = abs(error)
        if err > self._level_limit:
            self._bad_stops += 1
            self._good_stops = 0
        else:
            self._good_stops += 1
            self._bad_stops = 0
        evidence = {"leveling_error_mm": error, "limit_mm": self._level_limit,
                    "floor": v.get("floor")}
        if self._bad_stops >= self._bad_stops_needed or err > 2 * self._level_limit:
            return self._leveling.raise_(ts, evidence)
        if self._good_stops >= self._good_stops_needed:
            return self._leveling.clear(ts, evidence)
        return []


register("elevator_rules")(ElevatorRules)
