"""The detection stage: per-device monitors fed by readings, status changes and time.

Monitors are built once per device at start from the profile's ``detectors`` list
(``monitor_factory`` defaults to :func:`edge.detectors.build_monitors`; a bad detector
configuration fails the start, naming the detector). Telemetry goes to ``observe``, the
status topic to ``on_status``, the runner's once-a-second clock to ``tick``; device-native
events become events directly. A monitor that raises is counted and logged and the others
carry on: one buggy detector never stops the agent.

A reading whose timestamp is not newer than the device's last one (an MQTT redelivery
after a reconnect) is not shown to the monitors again, so a redelivery cannot create a
second episode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from device_profiles.messages import Event, Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig, SiteConfig
from edge.detectors.base import DeviceMonitor, Finding, build_monitors
from edge.events import UnknownEventType, finding_to_event, native_to_event
from edge.metrics import Metrics
from edge.validate import NativeEvent, StatusChange

log = logging.getLogger(__name__)

MonitorsFactory = Callable[[DeviceProfile, DeviceConfig], list[DeviceMonitor]]


@dataclass
class _Device:
    config: DeviceConfig
    profile: DeviceProfile
    monitors: list[DeviceMonitor]
    last_ts: float = float("-inf")


class Detection:
    """Every device's monitors, and the translation of their findings into events."""

    def __init__(
        self,
        site: SiteConfig,
        profiles: Mapping[str, DeviceProfile],
        *,
        monitor_factory: MonitorsFactory = build_monitors,
        metrics: Metrics | None = None,
    ) -> None:
        self._site_id = site.site_id
        self._gateway_id = site.gateway_id
        self._metrics = metrics or Metrics()
        self._devices: dict[str, _Device] = {}
        for device in site.all_devices():
            profile = profiles[device.kind]
            self._devices[device.id] = _Device(device, profile, monitor_factory(profile, device))
        self._logged: set[tuple[str, str]] = set()

    @property
    def monitor_count(self) -> int:
        return sum(len(d.monitors) for d in self._devices.values())

    def observe(self, reading: Reading) -> list[Event]:
        """Events caused by one validated reading (stale or repeated readings are skipped)."""
        device = self._devices[reading.device_id]
        if reading.ts <= device.last_ts:
            self._metrics.inc("readings_stale")
            return []
        device.last_ts = reading.ts
        return self._run(device, lambda m: m.observe(reading), "observe")

    def status(self, change: StatusChange) -> list[Event]:
        device = self._devices[change.device_id]
        return self._run(device, lambda m: m.on_status(change.ts, change.online), "on_status")

    def native(self, native: NativeEvent) -> list[Event]:
        device = self._devices[native.device_id]
        return [native_to_event(native, profile=device.profile, gateway_id=self._gateway_id)]

    def tick(self, now: float) -> list[Event]:
        """Let every monitor see that time passed (offline detection)."""
        events: list[Event] = []
        for device in self._devices.values():
            events.extend(self._run(device, lambda m: m.tick(now), "tick"))
        return events

    def _run(
        self, device: _Device, call: Callable[[DeviceMonitor], list[Finding]], what: str
    ) -> list[Event]:
        events: list[Event] = []
        started = time.perf_counter()
        for monitor in device.monitors:
            try:
                findings = call(monitor)
            except Exception:  # one monitor's bug must not stop the device's other monitors
                self._count_error(device, monitor, what)
                continue
            for finding in findings:
                try:
                    events.append(
                        finding_to_event(
                            finding, profile=device.profile, site_id=self._site_id,
                            gateway_id=self._gateway_id, device_id=device.config.id,
                        )
                    )
                except (UnknownEventType, ValueError) as exc:
                    self._metrics.inc("detector_errors", detector=type(monitor).__name__)
                    log.error("device %s: dropped a finding: %s", device.config.id, exc)
        self._metrics.inc("detector_seconds", time.perf_counter() - started)
        return events

    def _count_error(self, device: _Device, monitor: DeviceMonitor, what: str) -> None:
        name = type(monitor).__name__
        self._metrics.inc("detector_errors", detector=name)
        if (device.profile.kind, name) not in self._logged:
            self._logged.add((device.profile.kind, name))
            log.exception("detector %s.%s failed on %s (further failures only counted)",
                          name, what, device.config.id)
