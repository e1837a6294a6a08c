"""The detector contracts.

Two levels, as in River:

* :class:`Detector` scores one sample: ``learn_one(x)`` updates its state and
  ``score_one(x)`` returns a float, higher meaning more anomalous. Its constructor only
  stores parameters; all state is built from data.
* :class:`DeviceMonitor` watches one device and turns what it sees into :class:`Finding`
  transitions (raised / cleared episodes). A score detector becomes a monitor through the
  thresholding wrapper (hysteresis, minimum duration, cool-down, anomalies kept out of
  learning); rule detectors (entrapment, forced open...) are monitors directly.

Monitors are registered by name (:func:`register`) and chosen per kind by the profile's
``detectors`` list; :func:`build_monitors` builds them for one device, validating their
parameters at construction (a bad parameter fails loudly, naming the detector).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from device_profiles.messages import EventState, Forecast, Reading
from device_profiles.schema import DetectorSpec, DeviceProfile
from device_profiles.site import DeviceConfig


class DetectorConfigError(ValueError):
    """A detector's parameters in a profile are invalid."""


class Detector(Protocol):
    """A streaming anomaly scorer over one sample (a mapping of field -> value)."""

    def learn_one(self, x: Mapping[str, float]) -> None: ...

    def score_one(self, x: Mapping[str, float]) -> float: ...


@runtime_checkable
class WindowedDetector(Detector, Protocol):
    """A detector that smooths over recent samples and can forget them (a gap in the data,
    or the device leaving the operating state the detector models)."""

    def reset_window(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Finding:
    """One state change of one fault episode of one device.

    ``episode_start`` is the data timestamp at which the episode was raised; together with
    the device and event type it names the episode, and so the stable event id.
    """

    event_type: str
    state: EventState
    ts: float
    episode_start: float
    evidence: dict[str, Any] = field(default_factory=dict)
    forecast: Forecast | None = None


class DeviceMonitor(Protocol):
    """Stateful per-device detection producing episode transitions."""

    def observe(self, reading: Reading) -> list[Finding]:
        """Take one validated reading; return the transitions it causes (usually none)."""
        ...

    def tick(self, now: float) -> list[Finding]:
        """Time passed without data (``now`` in the device's time base); e.g. offline."""
        ...

    def on_status(self, ts: float, online: bool) -> list[Finding]:
        """The device's retained ``status`` topic changed (``offline`` is also its last will)."""
        ...


class MonitorBase:
    """Convenience base: monitors that ignore time ticks and status changes."""

    __slots__ = ()

    def observe(self, reading: Reading) -> list[Finding]:
        raise NotImplementedError

    def tick(self, now: float) -> list[Finding]:
        return []

    def on_status(self, ts: float, online: bool) -> list[Finding]:
        return []


MonitorFactory = Callable[[DetectorSpec, DeviceProfile, DeviceConfig], DeviceMonitor]

_REGISTRY: dict[str, MonitorFactory] = {}


def register(name: str) -> Callable[[MonitorFactory], MonitorFactory]:
    """Register a monitor factory under ``name`` (the profile's ``detectors[].name``)."""

    def deco(factory: MonitorFactory) -> MonitorFactory:
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def registered() -> dict[str, MonitorFactory]:
    """All registered detector factories by name (importing the built-in ones first)."""
    import edge.detectors  # noqa: F401  (explicit registry: the package imports every module)

    return dict(_REGISTRY)


def build_monitors(profile: DeviceProfile, device: DeviceConfig) -> list[DeviceMonitor]:
    """The monitors the profile asks for, built for one device."""
    factories = registered()
    monitors = []
    for spec in profile.detectors:
        factory = factories.get(spec.name)
        if factory is None:
            raise DetectorConfigError(
                f"profile {profile.kind!r}: unknown detector {spec.name!r}; "
                f"registered: {', '.join(sorted(factories))}"
            )
        try:
            monitors.append(factory(spec, profile, device))
        except DetectorConfigError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise DetectorConfigError(
                f"profile {profile.kind!r}, detector {spec.name!r}: invalid params: {exc}"
            ) from exc
    return monitors
