"""The shared message shapes: telemetry, device status, events and work orders.

These are the only definitions of the shapes that cross a process boundary
(device -> edge over MQTT, edge -> cloud over HTTP, cloud -> people over the API).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from device_profiles.schema import Category, Priority, Severity

EventState = Literal["raised", "cleared"]
WorkOrderState = Literal[
    "open", "assigned", "in_progress", "on_hold", "resolved", "closed", "cancelled"
]
WorkOrderSource = Literal["event", "report", "preventive"]
TOPIC_PREFIX = "gh"
"""Topics are ``gh/{site}/{kind}/{device_id}/{telemetry|status|event}``."""
CHANNELS = ("telemetry", "status", "event")


def telemetry_topic(site_id: str, kind: str, device_id: str, channel: str = "telemetry") -> str:
    """The MQTT topic a device publishes ``channel`` on."""
    return f"{TOPIC_PREFIX}/{site_id}/{kind}/{device_id}/{channel}"


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated telemetry message, as the edge pipeline passes it between stages."""

    site_id: str
    kind: str
    device_id: str
    ts: float
    values: dict[str, float]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Forecast(_Message):
    """A trend detector's projection: when will ``field`` cross ``limit``."""

    field: str
    limit: float
    hours_to_limit: float
    slope_per_hour: float | None = None


class Event(_Message):
    """A finding of the edge (or a device-native event), sent to the cloud.

    ``event_id`` is stable: the same fault episode always yields the same id
    (see :func:`make_event_id`), so a resend can never open a second work order.
    """

    event_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    site_id: str = Field(min_length=1, max_length=64)
    gateway_id: str = Field(min_length=1, max_length=64)
    device_id: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=32)
    type: str = Field(min_length=3, max_length=64, pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    severity: Severity
    state: EventState
    ts: float = Field(ge=0)
    evidence: dict[str, Any] = Field(default_factory=dict)
    forecast: Forecast | None = None


def make_event_id(
    site_id: str, device_id: str, event_type: str, episode_start: float, state: EventState
) -> str:
    """Deterministic id of one state change of one fault episode.

    The episode is named by its start time (the timestamp of the reading that raised it,
    taken from the device's data, never the wall clock), so replaying the same data after a
    crash yields the same ids.
    """
    key = f"{site_id}|{device_id}|{event_type}|{episode_start:.3f}|{state}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class EventBatch(_Message):
    """``POST /api/v1/events`` body."""

    events: list[Event] = Field(max_length=5000)


class EventRejection(_Message):
    event_id: str
    reason: str


class EventBatchResult(_Message):
    """Reply to a batch. The edge deletes ``accepted`` and ``duplicates`` from its outbox."""

    accepted: list[str] = Field(default_factory=list)
    duplicates: list[str] = Field(default_factory=list)
    rejected: list[EventRejection] = Field(default_factory=list)


class WorkOrderPublic(BaseModel):
    """A work order as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    site_id: str
    device_id: str | None
    kind: str | None
    event_type: str | None
    source: WorkOrderSource
    title: str
    category: Category
    priority: Priority
    team: str
    state: WorkOrderState
    opened_at: float
    response_due: float
    resolve_due: float
    event_count: int
    condition_cleared: bool
    assignee: str | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None
    rework: bool = False
    escalation_level: int = 0
    rating: int | None = None
    description: str = ""
    location: str | None = None
    reporter: str | None = None
    plan_name: str | None = None
    due_at: float | None = None
    """Preventive orders: the date the plan's visit is due."""
    response_breached: bool = False
    resolve_breached: bool = False
    rework_count: int = 0
    held_seconds: float = 0.0
    last_event_at: float | None = None
    photos: list[str] = Field(default_factory=list)
    """Photo references a person's report carries (``/api/v1/evidence/...`` paths)."""
