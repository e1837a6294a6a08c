"""Building blocks every monitor shares: parameter checking, episodes and hysteresis.

* :class:`Params` reads a detector's ``params`` with types and bounds and refuses unknown
  keys, so a typo in a profile fails when the monitor is built, naming the parameter.
* :class:`Episode` turns "the condition is now true / false" into at most one ``raised`` and
  one ``cleared`` :class:`Finding` per fault episode, with ``episode_start`` taken from the
  data timestamp that raised it (so a replay yields the same event ids).
* :class:`Hysteresis` is the thresholding rule: a raise level and a lower clear level, a
  minimum duration before raising, a minimum calm before clearing and a cool-down after a
  clear against flapping. All durations are in data time (reading timestamps).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping
from typing import Any, Literal, TypeVar

from device_profiles.messages import Forecast
from device_profiles.schema import DetectorSpec, DeviceProfile
from edge.detectors.base import DetectorConfigError, Finding

EVENT_PREFIX: dict[str, str] = {
    "elevator": "elevator",
    "water_pump": "pump",
    "smart_meter": "meter",
    "access_gate": "gate",
    "camera": "camera",
}
"""Event-type prefix of each device kind (``water_pump`` raises ``pump.*``)."""


_H = TypeVar("_H", bound=Hashable)
_SHARED: dict[Any, Any] = {}


def shared(value: _H) -> _H:
    """One object for equal immutable values (a float parameter, a tuple of bounds).

    Every device of a kind has the same detector configuration; without this each device's
    monitors would hold their own copies of the same floats, strings and tuples (24 bytes
    a float, more for tuples). The table only grows with distinct configurations.
    """
    if isinstance(value, str):
        return sys.intern(value)  # type: ignore[return-value]
    if value != value:  # NaN: never equal to itself, so a table key would never be found
        return value
    return _SHARED.setdefault((type(value), value), value)  # type: ignore[no-any-return]


def event_type(profile: DeviceProfile, spec: DetectorSpec, suffix: str) -> str:
    """The event type a detector raises: the profile's ``event`` or ``{prefix}.{suffix}``."""
    if spec.event is not None:
        return spec.event
    return sys.intern(f"{EVENT_PREFIX[profile.kind]}.{suffix}")


def rule_event(profile: DeviceProfile, suffix: str) -> str:
    """``{prefix}.{suffix}`` for a rule detector; it must be declared in the profile."""
    name = sys.intern(f"{EVENT_PREFIX[profile.kind]}.{suffix}")
    if name not in profile.events:
        raise DetectorConfigError(
            f"profile {profile.kind!r} does not declare event {name!r} that the rules raise"
        )
    return name


def numeric_fields(profile: DeviceProfile, spec: DetectorSpec) -> tuple[str, ...]:
    """The fields a detector reads: its own list, or every non-boolean field of the profile."""
    if spec.fields:
        return spec.fields
    return tuple(name for name, f in profile.fields.items() if f.type != "bool")


class Params:
    """Typed access to a detector's ``params``; :meth:`done` rejects keys nobody read."""

    def __init__(self, spec: DetectorSpec) -> None:
        self._name = spec.name
        self._raw: dict[str, Any] = dict(spec.params)
        self._used: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self._used.add(key)
        return self._raw.get(key, default)

    def _fail(self, key: str, msg: str) -> DetectorConfigError:
        return DetectorConfigError(f"detector {self._name!r}: param {key!r} {msg}")

    def number(
        self, key: str, default: float, *, lo: float | None = None, hi: float | None = None
    ) -> float:
        """A float parameter within ``[lo, hi]``."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"must be a number, got {value!r}")
        out = float(value)
        if lo is not None and out < lo:
            raise self._fail(key, f"must be >= {lo}, got {out}")
        if hi is not None and out > hi:
            raise self._fail(key, f"must be <= {hi}, got {out}")
        return shared(out)

    def optional_number(self, key: str) -> float | None:
        """A float parameter that may be absent."""
        if self._raw.get(key) is None:
            self._used.add(key)
            return None
        return self.number(key, 0.0)

    def integer(self, key: str, default: int, *, lo: int | None = None) -> int:
        """An integer parameter, at least ``lo``."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {value!r}")
        if lo is not None and value < lo:
            raise self._fail(key, f"must be >= {lo}, got {value}")
        return value

    def text(self, key: str, default: str | None) -> str | None:
        """A string parameter (or ``None`` when absent and no default)."""
        value = self._get(key, default)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, f"must be a string, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """A boolean parameter."""
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {value!r}")
        return value

    def number_map(self, key: str, allowed: tuple[str, ...]) -> dict[str, float]:
        """A mapping field -> number; every key must be one of ``allowed``."""
        value = self._get(key, {})
        if not isinstance(value, Mapping):
            raise self._fail(key, f"must be a mapping of field to number, got {value!r}")
        out: dict[str, float] = {}
        for name, v in value.items():
            if name not in allowed:
                raise self._fail(key, f"names field {name!r} the detector does not read")
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise self._fail(key, f"value for {name!r} must be a positive number")
            out[sys.intern(str(name))] = shared(float(v))
        return out

    def done(self) -> None:
        """Fail on parameters the detector does not know (typos in a profile)."""
        unknown = sorted(set(self._raw) - self._used)
        if unknown:
            raise DetectorConfigError(
                f"detector {self._name!r}: unknown params {', '.join(unknown)}"
            )


class Episode:
    """One event type's episode state: emits a ``raised`` then a ``cleared`` finding."""

    __slots__ = ("_start", "event_type")

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        self._start: float | None = None

    @property
    def active(self) -> bool:
        """Whether an episode is raised and not yet cleared."""
        return self._start is not None

    @property
    def start(self) -> float | None:
        """Data timestamp the current episode was raised at (``None`` when inactive)."""
        return self._start

    def raise_(
        self,
        ts: float,
        evidence: dict[str, Any] | None = None,
        forecast: Forecast | None = None,
        *,
        start: float | None = None,
    ) -> list[Finding]:
        """Open an episode at ``start`` (default ``ts``); nothing if one is already open."""
        if self._start is not None:
            return []
        self._start = ts if start is None else start
        return [
            Finding(self.event_type, "raised", ts, self._start, evidence or {}, forecast)
        ]

    def clear(self, ts: float, evidence: dict[str, Any] | None = None) -> list[Finding]:
        """Close the open episode; nothing if none is open."""
        if self._start is None:
            return []
        start, self._start = self._start, None
        return [Finding(self.event_type, "cleared", ts, start, evidence or {})]


Transition = Literal["raise", "clear"] | None
_NEVER = float("-inf")


class Hysteresis:
    """Thresholding with hysteresis, minimum duration and cool-down, over data time.

    * raises once ``score >= raise_level`` has held for ``min_duration`` seconds (and at
      least ``min_count`` consecutive samples), and not within ``cooldown`` seconds of the
      last clear;
    * clears once ``score <= clear_level`` has held for ``clear_duration`` seconds (and
      ``clear_count`` samples). Scores between the two levels keep the current state, so a
      noisy signal hovering at the raise level cannot flap.
    """

    __slots__ = (
        "_above_n",
        "_above_since",
        "_active",
        "_below_n",
        "_below_since",
        "_last_clear",
        "clear_count",
        "clear_duration",
        "clear_level",
        "cooldown",
        "min_count",
        "min_duration",
        "raise_level",
    )

    def __init__(
        self,
        raise_level: float,
        clear_level: float | None = None,
        *,
        min_duration: float = 0.0,
        min_count: int = 1,
        clear_duration: float = 0.0,
        clear_count: int = 1,
        cooldown: float = 0.0,
    ) -> None:
        if clear_level is None:
            clear_level = raise_level
        if clear_level > raise_level:
            raise DetectorConfigError(
                f"clear level {clear_level} must not exceed raise level {raise_level}"
            )
        if min(min_duration, clear_duration, cooldown) < 0 or min(min_count, clear_count) < 1:
            raise DetectorConfigError("durations must be >= 0 and counts >= 1")
        self.raise_level = raise_level
        self.clear_level = clear_level
        self.min_duration = min_duration
        self.min_count = min_count
        self.clear_duration = clear_duration
        self.clear_count = clear_count
        self.cooldown = cooldown
        self._active = False
        self._above_since: float | None = None
        self._above_n = 0
        self._below_since: float | None = None
        self._below_n = 0
        self._last_clear = _NEVER

    @property
    def active(self) -> bool:
        """Whether the alarm is currently raised."""
        return self._active

    def update(self, ts: float, score: float) -> Transition:
        """Feed one score at data time ``ts``; return ``"raise"``, ``"clear"`` or ``None``."""
        if not self._active:
            if score >= self.raise_level:
                if self._above_since is None:
                    self._above_since = ts
                    self._above_n = 0
                self._above_n += 1
                if (
                    ts - self._above_since >= self.min_duration
                    and self._above_n >= self.min_count
                    and ts - self._last_clear >= self.cooldown
                ):
                    self._active = True
                    self._above_since = None
                    self._below_since = None
                    return "raise"
            else:
                self._above_since = None
            return None
        if score <= self.clear_level:
            if self._below_since is None:
                self._below_since = ts
                self._below_n = 0
            self._below_n += 1
            if ts - self._below_since >= self.clear_duration and self._below_n >= self.clear_count:
                self._active = False
                self._below_since = None
                self._last_clear = ts
                return "clear"
        else:
            self._below_since = None
        return None

    def reset_pending(self) -> None:
        """Forget a raise or clear that is still waiting for its duration (the data it was
        based on stopped counting, e.g. the device left its operating state)."""
        self._above_since = None
        self._below_since = None


class ConditionMonitor:
    """One boolean rule condition with hysteresis, emitting one event type's episodes."""

    __slots__ = ("_shortcut", "episode", "gate")

    def __init__(self, event_type: str, gate: Hysteresis) -> None:
        self.episode = Episode(event_type)
        self.gate = gate
        self._shortcut = gate.raise_level > 0.0
        """A false condition (score 0) cannot start a raise: while the gate is idle it
        changes nothing, and :meth:`step` need not call the gate."""

    def update(
        self,
        ts: float,
        condition: bool,
        evidence: dict[str, Any] | None = None,
        forecast: Forecast | None = None,
    ) -> list[Finding]:
        """Feed the condition's truth at ``ts``; return the transition it causes."""
        step = self.step(ts, condition)
        if step is None:
            return []
        return self.emit(step, ts, evidence, forecast)

    def step(self, ts: float, condition: bool) -> Transition:
        """Feed the condition's truth at ``ts``; return the gate's transition, without a
        finding yet: a caller that builds its evidence only when there is a transition
        calls :meth:`emit` with it (``update`` is ``step`` then ``emit``)."""
        gate = self.gate
        if not condition and self._shortcut and not gate._active and gate._above_since is None:
            return None
        return gate.update(ts, 1.0 if condition else 0.0)

    def emit(
        self,
        step: Transition,
        ts: float,
        evidence: dict[str, Any] | None = None,
        forecast: Forecast | None = None,
    ) -> list[Finding]:
        """The finding of a transition returned by :meth:`step`."""
        if step == "raise":
            return self.episode.raise_(ts, evidence, forecast)
        if step == "clear":
            return self.episode.clear(ts, evidence)
        return []


def condition_from(
    p: Params,
    event: str,
    *,
    min_duration_s: float = 0.0,
    clear_after_s: float = 0.0,
    cooldown_s: float = 0.0,
    prefix: str = "",
) -> ConditionMonitor:
    """A :class:`ConditionMonitor` whose durations the params may override.

    With ``prefix`` the params are ``{prefix}min_duration_s`` etc., so one rule detector can
    tune each of its rules separately.
    """
    gate = Hysteresis(
        1.0,
        0.0,
        min_duration=p.number(f"{prefix}min_duration_s", min_duration_s, lo=0),
        clear_duration=p.number(f"{prefix}clear_after_s", clear_after_s, lo=0),
        cooldown=p.number(f"{prefix}cooldown_s", cooldown_s, lo=0),
    )
    return ConditionMonitor(event, gate)
