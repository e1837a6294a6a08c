"""Turning detector findings and device-native events into cloud :class:`Event` messages.

The event id comes from :func:`device_profiles.messages.make_event_id` over the site, the
device, the event type, the episode's start (a data timestamp) and the state, so the same
episode replayed after a crash yields the same id and the cloud can drop the resend.
The severity is the profile's, never the detector's opinion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from device_profiles.messages import Event, make_event_id
from device_profiles.schema import DeviceProfile
from edge.detectors.base import Finding
from edge.outbox import CRITICAL, EVENTS, Entry
from edge.validate import NativeEvent


class UnknownEventType(ValueError):
    """A detector raised an event type its kind's profile does not declare (a bug)."""


def finding_to_event(
    finding: Finding, *, profile: DeviceProfile, site_id: str, gateway_id: str, device_id: str
) -> Event:
    """The event for one finding of one device of ``profile``'s kind."""
    spec = profile.events.get(finding.event_type)
    if spec is None:
        raise UnknownEventType(
            f"{profile.kind}: detector raised undeclared event {finding.event_type!r}"
        )
    return Event(
        event_id=make_event_id(
            site_id, device_id, finding.event_type, finding.episode_start, finding.state
        ),
        site_id=site_id,
        gateway_id=gateway_id,
        device_id=device_id,
        kind=profile.kind,
        type=finding.event_type,
        severity=spec.severity,
        state=finding.state,
        ts=finding.ts,
        evidence=_json_safe(finding.evidence),
        forecast=finding.forecast,
    )


def native_to_event(native: NativeEvent, *, profile: DeviceProfile, gateway_id: str) -> Event:
    """The event for a device-native event (its own timestamp names the episode)."""
    spec = profile.events[native.event_type]
    return Event(
        event_id=make_event_id(
            native.site_id, native.device_id, native.event_type, native.ts, native.state
        ),
        site_id=native.site_id,
        gateway_id=gateway_id,
        device_id=native.device_id,
        kind=native.kind,
        type=native.event_type,
        severity=spec.severity,
        state=native.state,
        ts=native.ts,
        evidence={"native_type": native.native_type, **native.evidence},
    )


def lane_for(event: Event) -> str:
    """Critical events travel in their own lane: first out, never evicted."""
    return CRITICAL if event.severity == "critical" else EVENTS


def outbox_entry(event: Event) -> Entry:
    """The outbox item of ``event``: keyed by its id, the JSON body as payload."""
    return Entry(lane_for(event), event.event_id, event.model_dump_json().encode())


def _json_safe(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """Evidence as plain JSON values (a detector may hand numpy scalars or tuples)."""
    safe: dict[str, Any] = json.loads(json.dumps(dict(evidence), default=_coerce))
    return safe


def _coerce(value: object) -> object:
    for attr in ("item", "tolist"):
        method = getattr(value, attr, None)
        if callable(method):
            return method()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)
