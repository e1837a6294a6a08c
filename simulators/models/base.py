"""What every simulated device shares: samples, fault specs, fault scheduling, cheap noise.

A :class:`DeviceModel` is a small state machine advanced by :meth:`DeviceModel.step` to a
given (simulated) time. It never reads the wall clock and draws every random number from
the :class:`numpy.random.Generator` it was built with, so the same seed and the same
sequence of ``step`` times always give the same samples.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig

KIND_PREFIX: dict[str, str] = {
    "elevator": "elevator",
    "water_pump": "pump",
    "smart_meter": "meter",
    "access_gate": "gate",
    "camera": "camera",
}
"""Event-type prefix of each device kind (``pump.bearing_wear`` belongs to ``water_pump``)."""


class FaultError(ValueError):
    """A fault spec names an unknown type, another kind's type, or an empty time window."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One injected fault: ``type`` is the event type the edge should raise for it.

    ``start`` and ``end`` are epoch seconds in simulated time; the fault is active on
    ``start <= ts < end``. ``params`` tune it (for example ``ramp``: seconds from the
    start until a trend reaches the profile's limit or a fault its full severity).
    """

    device_id: str
    type: str
    start: float
    end: float
    params: dict[str, Any] = field(default_factory=dict)

    def active(self, ts: float) -> bool:
        return self.start <= ts < self.end

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "params": dict(self.params),
        }


@dataclass(slots=True)
class Sample:
    """What a device reports at ``ts``.

    ``values`` maps profile field names to numbers (ints for ``int``/``bool`` fields); it is
    empty while the device is silent (an ``*.offline`` fault). ``native_events`` are
    payloads for the device's ``.../event`` topic (``{"ts": .., "type": ..}``). ``status``
    is ``"offline"`` on the first silent step and ``"online"`` on the first step after it,
    ``None`` otherwise.
    """

    ts: float
    values: dict[str, float]
    native_events: list[dict[str, Any]] = field(default_factory=list)
    status: Literal["online", "offline"] | None = None


class Noise:
    """Buffered draws from one generator: scalar draws from numpy cost microseconds each,
    these cost a list index. Deterministic for a given generator."""

    __slots__ = ("_i", "_j", "_normals", "_rng", "_size", "_uniforms")

    def __init__(self, rng: np.random.Generator, size: int = 256) -> None:
        self._rng = rng
        self._size = size
        self._normals: list[float] = []
        self._uniforms: list[float] = []
        self._i = size
        self._j = size

    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    def normal(self, mean: float = 0.0, std: float = 1.0) -> float:
        if self._i >= self._size:
            self._normals = self._rng.standard_normal(self._size).tolist()
            self._i = 0
        value = self._normals[self._i]
        self._i += 1
        return mean + std * value

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if self._j >= self._size:
            self._uniforms = self._rng.random(self._size).tolist()
            self._j = 0
        value = self._uniforms[self._j]
        self._j += 1
        return low + (high - low) * value

    def chance(self, p: float) -> bool:
        return self.uniform() < p

    def poisson(self, lam: float) -> int:
        """Poisson count (Knuth's method; fine for the small means used here)."""
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, round(self.normal(lam, math.sqrt(lam))))
        limit = math.exp(-lam)
        k = 0
        p = self.uniform()
        while p > limit:
            k += 1
            p *= self.uniform()
        return k


class DeviceModel(ABC):
    """A simulated device of one kind. Subclasses implement :meth:`_advance`.

    ``step(ts)`` advances the physical state to ``ts`` (times must not go backwards) and
    returns the sample the device reports then. The physical process keeps evolving while
    an ``*.offline`` fault silences the device; only its messages are withheld.
    """

    kind: ClassVar[str]
    fault_types: ClassVar[tuple[str, ...]]
    """Fault types specific to the kind (``{prefix}.offline`` is added for every kind)."""
    default_durations: ClassVar[dict[str, float]] = {}
    default_params: ClassVar[dict[str, dict[str, Any]]] = {}
    trend_limits: ClassVar[dict[str, str]] = {}
    """Trend faults -> the profile field whose ``limit`` the trend crosses after ``ramp``."""

    def __init__(
        self, device: DeviceConfig, profile: DeviceProfile, rng: np.random.Generator
    ) -> None:
        if device.kind != self.kind or profile.kind != self.kind:
            raise ValueError(
                f"{type(self).__name__} simulates {self.kind!r}, got device kind "
                f"{device.kind!r} and profile kind {profile.kind!r}"
            )
        self.device = device
        self.profile = profile
        self.noise = Noise(rng)
        self._faults: list[FaultSpec] = []
        self._last_ts: float | None = None
        self._silent = False

    @property
    def period(self) -> float:
        """Seconds between samples (the profile's sampling period)."""
        return float(self.profile.sampling_period)

    @property
    def faults(self) -> tuple[FaultSpec, ...]:
        """Every fault injected so far, with its parameters completed."""
        return tuple(self._faults)

    @classmethod
    def all_fault_types(cls) -> tuple[str, ...]:
        return (*cls.fault_types, f"{KIND_PREFIX[cls.kind]}.offline")

    def inject(self, spec: FaultSpec) -> FaultSpec:
        """Schedule ``spec``; return it with defaults and derived truth filled into params.

        Raise :class:`FaultError` for another device, an unknown type or an empty window.
        """
        if spec.device_id != self.device.id:
            raise FaultError(f"fault for {spec.device_id!r} injected into {self.device.id!r}")
        resolved = resolve_fault(spec, type(self))
        resolved = self._complete(resolved)
        self._faults.append(resolved)
        return resolved

    def _complete(self, spec: FaultSpec) -> FaultSpec:
        """Hook: add model-specific truth (for example a slope) to a fault's params."""
        return spec

    def active(self, ts: float) -> dict[str, FaultSpec]:
        """Faults active at ``ts`` by type (the latest injected wins on overlap)."""
        if not self._faults:
            return {}
        return {f.type: f for f in self._faults if f.start <= ts < f.end}

    def step(self, ts: float) -> Sample:
        """Advance to ``ts`` and return the sample reported then."""
        if self._last_ts is not None and ts < self._last_ts:
            raise ValueError(f"{self.device.id}: time went backwards ({ts} < {self._last_ts})")
        dt = self.period if self._last_ts is None else ts - self._last_ts
        self._last_ts = ts
        active = self.active(ts)
        values, events = self._advance(ts, dt, active)
        offline = f"{KIND_PREFIX[self.kind]}.offline" in active
        status: Literal["online", "offline"] | None = None
        if offline:
            if not self._silent:
                status = "offline"
            self._silent = True
            return Sample(ts, {}, [], status)
        if self._silent:
            status = "online"
            self._silent = False
        return Sample(ts, values, events, status)

    @abstractmethod
    def _advance(
        self, ts: float, dt: float, active: dict[str, FaultSpec]
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Advance the physics by ``dt`` seconds to ``ts``; return values and native events."""


def resolve_fault(spec: FaultSpec, model: type[DeviceModel]) -> FaultSpec:
    """Validate ``spec`` for ``model``'s kind and fill in default params.

    Pure: it does not depend on a device's random state, so a caller can compute the same
    truth (for example ``limit_cross_ts`` of a trend) without a model.
    """
    allowed = model.all_fault_types()
    if spec.type not in allowed:
        raise FaultError(
            f"fault type {spec.type!r} is not injectable into a {model.kind}; "
            f"expected one of {', '.join(allowed)}"
        )
    if not (math.isfinite(spec.start) and math.isfinite(spec.end)) or spec.end <= spec.start:
        raise FaultError(
            f"fault {spec.type} on {spec.device_id}: end ({spec.end}) must be after "
            f"start ({spec.start})"
        )
    params = dict(model.default_params.get(spec.type, {}))
    params.update(spec.params)
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise FaultError(f"fault {spec.type}: param {key!r} must be a number or a string")
    if "ramp" in params:
        ramp = float(params["ramp"])
        if not ramp > 0:
            raise FaultError(f"fault {spec.type}: ramp must be positive, got {ramp}")
        params["ramp"] = ramp
    limit_field = model.trend_limits.get(spec.type)
    if limit_field is not None:
        limit = _profile_limit(model.kind, limit_field)
        params["field"] = limit_field
        params["limit"] = limit
        params["limit_cross_ts"] = float(spec.start) + float(params["ramp"])
    return FaultSpec(spec.device_id, spec.type, float(spec.start), float(spec.end), params)


def default_duration(model: type[DeviceModel], fault_type: str, params: dict[str, Any]) -> float:
    """How long a fault lasts when only its start is given (trends: past their limit)."""
    merged = dict(model.default_params.get(fault_type, {}))
    merged.update(params)
    if fault_type in model.trend_limits:
        return 1.25 * float(merged["ramp"])
    if fault_type.endswith(".offline"):
        return 600.0
    return model.default_durations.get(fault_type, 600.0)


def _profile_limit(kind: str, field_name: str) -> float:
    from device_profiles.loader import load_profiles

    limit = load_profiles()[kind].fields[field_name].limit
    if limit is None:
        raise FaultError(f"profile {kind!r} declares no limit for {field_name!r}")
    return float(limit)


def ramp_fraction(spec: FaultSpec, ts: float) -> float:
    """0 at the fault's start rising linearly to 1 after ``params['ramp']`` seconds."""
    ramp = float(spec.params.get("ramp", 0.0))
    if ramp <= 0:
        return 1.0
    return min(1.0, max(0.0, (ts - spec.start) / ramp))


def first_order(current: float, target: float, dt: float, tau: float) -> float:
    """Move ``current`` toward ``target`` as a first-order lag with time constant ``tau``."""
    if tau <= 0:
        return target
    return target + (current - target) * math.exp(-dt / tau)
