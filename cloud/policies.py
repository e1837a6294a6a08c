"""Work-order policy lookups from the device profiles (the contract's SLAs are data)."""

from __future__ import annotations

from dataclasses import dataclass

from device_profiles import load_profiles
from device_profiles.schema import DeviceProfile, EventSpec, MaintenancePlanSpec


class UnknownEventType(LookupError):
    """The kind is unknown, or the kind's profile does not declare the event type."""


@dataclass(frozen=True)
class PolicyBook:
    """The profiles by kind, and the questions the engine asks of them."""

    profiles: dict[str, DeviceProfile]

    @classmethod
    def load(cls, profiles_dir: str | None = None) -> PolicyBook:
        return cls(load_profiles(profiles_dir))

    def event_spec(self, kind: str, event_type: str) -> EventSpec:
        """The spec of ``event_type`` for ``kind``; raise :class:`UnknownEventType`."""
        profile = self.profiles.get(kind)
        if profile is None:
            raise UnknownEventType(f"unknown device kind {kind!r}")
        spec = profile.events.get(event_type)
        if spec is None:
            raise UnknownEventType(f"event type {event_type!r} is not declared for kind {kind!r}")
        return spec

    def plans(self, kind: str) -> tuple[MaintenancePlanSpec, ...]:
        profile = self.profiles.get(kind)
        return profile.maintenance if profile is not None else ()

    def kinds(self) -> list[str]:
        return sorted(self.profiles)
