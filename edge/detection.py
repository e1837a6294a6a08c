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

Episodes are decided here, not in each monitor: an :class:`EpisodeRegistry` knows for every
(device, event type) whether an episode is open and when it started, and every finding of
the readings, status and tick paths passes through it:

* ``raised`` for a (device, type) already open: suppressed (counted
  ``episodes_reraise_suppressed``), since the fault is the one already told;
* ``cleared`` for an open one: emitted with the *registry's* ``episode_start`` (so the
  raised and cleared ids name the same episode) and closes it;
* ``cleared`` for one not open: suppressed (counted ``episodes_clear_suppressed``).

The registry is durable: every change rides with the event that causes it into the
outbox's transaction (:meth:`Detection.take_episode_changes`, ``Entry.episode``), and the
agent hands the stored registry to :meth:`Detection.restore` at start. Fresh monitors after
a crash re-raise an ongoing fault (from redelivered or new data): that maps to the open
episode and is suppressed. A restored episode that its detector does not confirm (raise
again) within ``confirm_periods`` sampling periods of fresh data from the device is closed
with a ``cleared`` event, evidence ``{"reason": "not confirmed after restart"}``: the fault
ended while the agent was down, or its detector needs a longer warm-up than the window.
A restored *offline* episode is closed by the device's first fresh reading, as the offline
detector itself would have closed it.

Device-native events bypass the registry: each is named by the device's own timestamp,
which a crash cannot change (a redelivery yields the same id), and most are one-shot
reports with no clear (a gate's ``forced_open``): opening registry episodes for them would
suppress every later report of the same type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from time import perf_counter
from typing import Literal

from device_profiles.messages import Event, Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import DeviceConfig, SiteConfig
from edge.detectors.base import DeviceMonitor, Finding, build_monitors
from edge.detectors.common import event_type
from edge.events import UnknownEventType, finding_to_event, native_to_event
from edge.metrics import Metrics
from edge.outbox import EpisodeState
from edge.validate import NativeEvent, StatusChange

log = logging.getLogger(__name__)

MonitorsFactory = Callable[[DeviceProfile, DeviceConfig], list[DeviceMonitor]]

NOT_CONFIRMED = "not confirmed after restart"
"""``evidence["reason"]`` of the clear that closes a restored episode nobody confirmed."""

DEFAULT_CONFIRM_PERIODS = 600.0
"""Sampling periods of fresh data a restored episode waits for its detector to re-raise.

Generous on purpose: closing an ongoing fault too early tells it as two episodes, while a
late clear of a fault that ended during the outage only delays its ``cleared`` event. 600
covers the rule detectors' warm-ups (the pump rules learn over 300 running samples)."""

Outcome = Literal["emit", "reraise_suppressed", "clear_suppressed"]


@dataclass(frozen=True, slots=True)
class _Open:
    start: float
    raised_ts: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the registry makes of one finding (see :meth:`EpisodeRegistry.judge`).

    ``finding``: what to emit (a clear carries the registry's episode start), ``None`` when
    suppressed; ``change``: the registry change the emitted event causes.
    """

    outcome: Outcome
    finding: Finding | None
    change: EpisodeState | None


class EpisodeRegistry:
    """The authoritative open episodes of every (device, event type), in memory.

    :meth:`judge` is pure; :meth:`apply` makes a verdict true once its event exists, so a
    finding that cannot become an event never changes the registry. Persistence is the
    caller's: each verdict's ``change`` must be committed with its event.
    """

    def __init__(self, restored: Iterable[EpisodeState] = ()) -> None:
        self._open: dict[tuple[str, str], _Open] = {}
        self._unconfirmed: dict[str, set[str]] = {}
        """Restored episodes not yet raised again, by device (kept small for the hot path)."""
        self._fresh_since: dict[str, float] = {}
        for state in restored:
            if state.open:
                self._open[(state.device_id, state.event_type)] = _Open(
                    state.start, state.raised_ts
                )
                self._unconfirmed.setdefault(state.device_id, set()).add(state.event_type)

    def open_start(self, device_id: str, event_type: str) -> float | None:
        """The start of the open episode of (device, type); ``None`` when none is open."""
        episode = self._open.get((device_id, event_type))
        return None if episode is None else episode.start

    def open_episodes(self) -> list[EpisodeState]:
        """Every open episode (for health pages and tests)."""
        return [
            EpisodeState(device, etype, ep.start, ep.raised_ts)
            for (device, etype), ep in sorted(self._open.items())
        ]

    def unconfirmed(self, device_id: str) -> list[str]:
        """Event types of the device's restored episodes its detectors have not re-raised."""
        return sorted(self._unconfirmed.get(device_id, ()))

    def judge(self, device_id: str, finding: Finding) -> Verdict:
        """The verdict on ``finding`` under the rules of the module docstring."""
        episode = self._open.get((device_id, finding.event_type))
        if finding.state == "raised":
            if episode is not None:
                return Verdict("reraise_suppressed", None, None)
            change = EpisodeState(device_id, finding.event_type, finding.episode_start,
                                  finding.ts)
            return Verdict("emit", finding, change)
        if episode is None:
            return Verdict("clear_suppressed", None, None)
        cleared = replace(finding, episode_start=episode.start)
        change = EpisodeState(device_id, finding.event_type, episode.start, episode.raised_ts,
                              open=False)
        return Verdict("emit", cleared, change)

    def apply(self, device_id: str, finding: Finding, verdict: Verdict) -> None:
        """Make ``verdict`` (from :meth:`judge` on ``finding``) the registry's state."""
        key = (device_id, finding.event_type)
        change = verdict.change
        if change is not None:
            if change.open:
                self._open[key] = _Open(change.start, change.raised_ts)
            else:
                self._open.pop(key, None)
        if verdict.outcome == "clear_suppressed":
            return
        pending = self._unconfirmed.get(device_id)
        if pending is not None:
            pending.discard(finding.event_type)
            if not pending:
                del self._unconfirmed[device_id]
                self._fresh_since.pop(device_id, None)

    def stale(
        self, device_id: str, ts: float, window_s: Callable[[str], float]
    ) -> list[Finding]:
        """Clears for the device's unconfirmed restored episodes whose window (seconds of
        fresh data, ``window_s(event_type)``) has passed: reading timestamps from the first
        one after the restart to ``ts``."""
        if device_id not in self._unconfirmed:
            return []
        since = self._fresh_since.setdefault(device_id, ts)
        out = []
        for etype in self.unconfirmed(device_id):
            window = window_s(etype)
            if ts - since < window:
                continue
            episode = self._open[(device_id, etype)]
            out.append(Finding(
                etype, "cleared", ts, episode.start,
                {"reason": NOT_CONFIRMED, "restored_start": episode.start,
                 "fresh_data_s": ts - since, "window_s": window},
            ))
        return out


@dataclass(slots=True)
class _Device:
    device_id: str
    """Only the id is kept: the site's :class:`DeviceConfig` served to build the monitors."""
    profile: DeviceProfile
    monitors: list[DeviceMonitor]
    confirm_s: float
    """Seconds of fresh data a restored episode of this device waits for confirmation."""
    offline_types: frozenset[str]
    """Event types of the profile's offline detectors: a fresh reading closes them."""
    last_ts: float = float("-inf")

    def confirm_window(self, event_type: str) -> float:
        return 0.0 if event_type in self.offline_types else self.confirm_s


class Detection:
    """Every device's monitors, and the translation of their findings into events."""

    def __init__(
        self,
        site: SiteConfig,
        profiles: Mapping[str, DeviceProfile],
        *,
        monitor_factory: MonitorsFactory = build_monitors,
        metrics: Metrics | None = None,
        confirm_periods: float = DEFAULT_CONFIRM_PERIODS,
    ) -> None:
        """``confirm_periods``: sampling periods of fresh data a restored episode waits for
        its detector to raise it again before it is closed as not confirmed."""
        if not confirm_periods > 0:
            raise ValueError(f"confirm_periods must be positive, got {confirm_periods}")
        self._confirm_periods = confirm_periods
        self.registry = EpisodeRegistry()
        self._changes: dict[str, EpisodeState] = {}
        self._site_id = site.site_id
        self._gateway_id = site.gateway_id
        self._metrics = metrics or Metrics()
        self._devices: dict[str, _Device] = {}
        per_kind: dict[str, tuple[float, frozenset[str]]] = {}
        """What every device of a kind shares (one object, not one per device)."""
        for device in site.all_devices():
            profile = profiles[device.kind]
            if device.kind not in per_kind:
                per_kind[device.kind] = (
                    confirm_periods * profile.sampling_period,
                    frozenset(
                        event_type(profile, spec, "offline")
                        for spec in profile.detectors if spec.name == "offline"
                    ),
                )
            confirm_s, offline_types = per_kind[device.kind]
            self._devices[device.id] = _Device(
                device.id, profile, monitor_factory(profile, device),
                confirm_s=confirm_s, offline_types=offline_types,
            )
        self._logged: set[tuple[str, str]] = set()
        self._detector_seconds = 0.0
        """Detection time not yet added to the ``detector_seconds`` counter."""

    @property
    def monitor_count(self) -> int:
        return sum(len(d.monitors) for d in self._devices.values())

    def restore(self, episodes: Iterable[EpisodeState]) -> int:
        """Start from the stored registry (call before the first message); return how many
        open episodes were restored. Episodes of devices or event types the site and
        profiles no longer have are skipped (counted ``episodes_restore_skipped``)."""
        known = []
        for state in episodes:
            device = self._devices.get(state.device_id)
            if device is None or state.event_type not in device.profile.events:
                self._metrics.inc("episodes_restore_skipped")
                log.warning("stored open episode %s %s skipped: no such device or event type",
                            state.device_id, state.event_type)
                continue
            known.append(state)
        self.registry = EpisodeRegistry(known)
        self._metrics.inc("episodes_restored", float(len(known)))
        if known:
            log.info("restored %d open episodes; each is closed unless its detector confirms "
                     "it within %g sampling periods of fresh data", len(known),
                     self._confirm_periods)
        return len(known)

    def take_episode_changes(self) -> dict[str, EpisodeState]:
        """Registry changes caused by the events returned since the last call, by event id.

        A caller that persists the registry commits each change with its event (the runner
        puts it on the event's outbox entry); others may ignore them.
        """
        changes, self._changes = self._changes, {}
        return changes

    def observe(self, reading: Reading) -> list[Event]:
        """Events caused by one validated reading (stale or repeated readings are skipped).

        The hot path of the agent: no closure, no metrics call per reading (the detection
        time is summed in a float and added to ``detector_seconds`` at every :meth:`tick`),
        and the registry is asked about restored episodes only while the device has some.
        """
        device = self._devices[reading.device_id]
        ts = reading.ts
        if ts <= device.last_ts:
            self._metrics.inc("readings_stale")
            return []
        device.last_ts = ts
        started = perf_counter()
        events: list[Event] = []
        for monitor in device.monitors:
            try:
                findings = monitor.observe(reading)
            except Exception:  # one monitor's bug must not stop the device's other monitors
                self._count_error(device, monitor, "observe")
                continue
            if findings:
                events.extend(self._admit(device, findings, type(monitor).__name__))
        self._detector_seconds += perf_counter() - started
        if device.device_id in self.registry._unconfirmed:
            stale = self.registry.stale(device.device_id, ts, device.confirm_window)
            if stale:
                self._metrics.inc("episodes_not_confirmed", float(len(stale)))
                events.extend(self._admit(device, stale, "restart"))
        return events

    def flush_metrics(self) -> None:
        """Add the detection time summed since the last call to ``detector_seconds``
        (:meth:`tick` does it once a second)."""
        pending, self._detector_seconds = self._detector_seconds, 0.0
        self._metrics.inc("detector_seconds", pending)

    def status(self, change: StatusChange) -> list[Event]:
        """Events caused by a status change, placed no earlier than the device's last reading.

        A bare ``online``/``offline`` carries no time and is stamped with the agent's clock,
        which may run behind the device's (a simulator at 5x, a device clock ahead): the
        status came after the readings already seen, so its episode must not start (and
        sort) before the reading that cleared the previous one.
        """
        device = self._devices[change.device_id]
        ts = max(change.ts, device.last_ts)
        return self._run(device, lambda m: m.on_status(ts, change.online), "on_status")

    def native(self, native: NativeEvent) -> list[Event]:
        """The event of a device-native event (not through the registry: see the module)."""
        device = self._devices[native.device_id]
        return [native_to_event(native, profile=device.profile, gateway_id=self._gateway_id)]

    def tick(self, now: float) -> list[Event]:
        """Let every monitor see that time passed (offline detection)."""
        events: list[Event] = []
        for device in self._devices.values():
            events.extend(self._run(device, lambda m: m.tick(now), "tick"))
        self.flush_metrics()
        return events

    def _run(
        self, device: _Device, call: Callable[[DeviceMonitor], list[Finding]], what: str
    ) -> list[Event]:
        events: list[Event] = []
        started = perf_counter()
        for monitor in device.monitors:
            try:
                findings = call(monitor)
            except Exception:  # one monitor's bug must not stop the device's other monitors
                self._count_error(device, monitor, what)
                continue
            if findings:
                events.extend(self._admit(device, findings, type(monitor).__name__))
        self._detector_seconds += perf_counter() - started
        return events

    def _admit(self, device: _Device, findings: Iterable[Finding], source: str) -> list[Event]:
        """Findings through the registry, then to events (recording each registry change)."""
        events: list[Event] = []
        device_id = device.device_id
        for finding in findings:
            verdict = self.registry.judge(device_id, finding)
            if verdict.finding is None:
                self.registry.apply(device_id, finding, verdict)
                self._metrics.inc(f"episodes_{verdict.outcome}")
                continue
            try:
                event = finding_to_event(
                    verdict.finding, profile=device.profile, site_id=self._site_id,
                    gateway_id=self._gateway_id, device_id=device_id,
                )
            except (UnknownEventType, ValueError) as exc:
                self._metrics.inc("detector_errors", detector=source)
                log.error("device %s: dropped a finding: %s", device_id, exc)
                continue
            self.registry.apply(device_id, finding, verdict)
            if verdict.change is not None:
                self._changes[event.event_id] = verdict.change
            events.append(event)
        return events

    def _count_error(self, device: _Device, monitor: DeviceMonitor, what: str) -> None:
        name = type(monitor).__name__
        self._metrics.inc("detector_errors", detector=name)
        if (device.profile.kind, name) not in self._logged:
            self._logged.add((device.profile.kind, name))
            log.exception("detector %s.%s failed on %s (further failures only counted)",
                          name, what, device.device_id)
