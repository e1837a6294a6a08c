"""MQTT topic names of a site: building the subscription and parsing what arrives.

Topics are ``gh/{site}/{kind}/{device_id}/{telemetry|status|event}`` (see
:func:`device_profiles.messages.telemetry_topic`). Parsing is strict and never raises: a
topic that does not have exactly that shape yields ``None`` so the caller can count it.
"""

from __future__ import annotations

from dataclasses import dataclass

from device_profiles.messages import CHANNELS, TOPIC_PREFIX


@dataclass(frozen=True, slots=True)
class TopicParts:
    """The four variable levels of a device topic."""

    site_id: str
    kind: str
    device_id: str
    channel: str


def parse_topic(topic: str) -> TopicParts | None:
    """Split a device topic; ``None`` if it is not ``gh/{site}/{kind}/{device}/{channel}``.

    Empty levels, wildcards, a wrong prefix or an unknown channel all yield ``None``.
    """
    levels = topic.split("/")
    if len(levels) != 5 or levels[0] != TOPIC_PREFIX:
        return None
    if any(not level or "+" in level or "#" in level for level in levels):
        return None
    _, site_id, kind, device_id, channel = levels
    if channel not in CHANNELS:
        return None
    return TopicParts(site_id=site_id, kind=kind, device_id=device_id, channel=channel)


def site_subscription(site_id: str, shared_group: str | None = None) -> str:
    """The one subscription the agent needs: every device and channel of its site.

    With ``shared_group`` the subscription is shared (``$share/{group}/...``), so several
    agents of the same site split the messages between them.
    """
    topic = f"{TOPIC_PREFIX}/{site_id}/+/+/+"
    if shared_group:
        return f"$share/{shared_group}/{topic}"
    return topic
