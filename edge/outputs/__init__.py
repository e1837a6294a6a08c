"""Telemetry outputs, registered by name in an explicit registry.

``register_output(name, factory)`` adds one; :func:`build_outputs` asks every registered
factory whether the site wants it (a factory returns ``None`` when its section is absent).
Built-in outputs are registered below, explicitly, not discovered by scanning folders.
"""

from __future__ import annotations

from collections.abc import Mapping

from device_profiles.schema import DeviceProfile
from device_profiles.site import SiteConfig
from edge.outputs.base import OutputFactory, OutputNotReady, TelemetryOutput

_REGISTRY: dict[str, OutputFactory] = {}


def register_output(name: str, factory: OutputFactory) -> None:
    """Register ``factory`` under ``name``; registering a name twice is a bug."""
    if name in _REGISTRY:
        raise ValueError(f"output {name!r} registered twice")
    _REGISTRY[name] = factory


def registered_outputs() -> dict[str, OutputFactory]:
    return dict(_REGISTRY)


def build_outputs(
    site: SiteConfig, profiles: Mapping[str, DeviceProfile]
) -> dict[str, TelemetryOutput]:
    """Every registered output the site asks for, by name."""
    built: dict[str, TelemetryOutput] = {}
    for name, factory in _REGISTRY.items():
        output = factory(site, profiles)
        if output is not None:
            built[name] = output
    return built


# Built-in outputs, registered explicitly (imported here so that the registry is complete
# whenever the package is imported; the module itself imports influxdb-client lazily).
from edge.outputs.cloud_summary import CloudSummaryOutput  # noqa: E402
from edge.outputs.tsdb import InfluxTelemetryWriter  # noqa: E402

register_output("influxdb", InfluxTelemetryWriter.from_site)
register_output("cloud_summary", CloudSummaryOutput.from_site)

__all__ = [
    "OutputFactory",
    "OutputNotReady",
    "TelemetryOutput",
    "build_outputs",
    "register_output",
    "registered_outputs",
]
