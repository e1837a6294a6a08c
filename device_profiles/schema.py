"""Pydantic schema of a device profile. Unknown keys are errors (``extra="forbid"``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device_profiles.durations import Duration

Severity = Literal["info", "warning", "critical"]
Priority = Literal["P1", "P2", "P3", "P4"]
"""P1 emergency (people at risk), P2 urgent, P3 normal repair, P4 routine."""
Category = Literal["elevator", "engineering", "security", "cleaning", "energy"]

KINDS: tuple[str, ...] = ("elevator", "water_pump", "smart_meter", "access_gate", "camera")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One telemetry field: unit and the physically valid range.

    ``min``/``max`` bound what a sensor can report at all (outside: the reading is rejected
    as invalid); ``warn_low``/``warn_high`` bound normal operation (outside: the
    out-of-range detector raises). ``limit`` is the engineering limit a trend is forecast
    against (for example the vibration a bearing must not exceed).
    """

    unit: str
    min: float
    max: float
    warn_low: float | None = None
    warn_high: float | None = None
    limit: float | None = None
    type: Literal["float", "int", "bool"] = "float"
    description: str = ""
    aliases: tuple[str, ...] = ()
    """Other names for this field in recordings (for example SKAB's ``Accelerometer1RMS``)."""

    @model_validator(mode="after")
    def _ordered(self) -> FieldSpec:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        for name in ("warn_low", "warn_high", "limit"):
            value = getattr(self, name)
            if value is not None and not self.min <= value <= self.max:
                raise ValueError(f"{name} ({value}) must lie within [min, max]")
        if (
            self.warn_low is not None
            and self.warn_high is not None
            and self.warn_low >= self.warn_high
        ):
            raise ValueError("warn_low must be below warn_high")
        return self


class WorkOrderPolicy(_Strict):
    """What the cloud does when this event is raised: the contract's SLA for it."""

    category: Category
    priority: Priority
    team: str
    response_sla: Duration
    """Seconds from opening until the order must be assigned and acknowledged."""
    resolve_sla: Duration
    """Seconds from opening until the fault must be fixed (on_hold pauses this clock)."""

    @model_validator(mode="after")
    def _response_first(self) -> WorkOrderPolicy:
        if self.response_sla <= 0 or self.resolve_sla <= 0:
            raise ValueError("SLAs must be positive")
        if self.response_sla > self.resolve_sla:
            raise ValueError("response_sla must not exceed resolve_sla")
        return self


class EventSpec(_Strict):
    """An event type this kind can raise, and whether it opens a work order."""

    severity: Severity
    description: str
    work_order: WorkOrderPolicy | None = None
    """``None``: the event is recorded on the device but opens no order."""


class DetectorSpec(_Strict):
    """A detector to run on every device of the kind, by registered name, with parameters."""

    name: str
    event: str | None = None
    """Event type raised (for single-event detectors); rule detectors may name several."""
    fields: tuple[str, ...] = ()
    """Fields the detector reads; empty means every numeric field of the profile."""
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"detector name {value!r} must be snake_case")
        return value


class MaintenancePlanSpec(_Strict):
    """A preventive-maintenance plan: an order every ``every``, generated ``lead`` ahead."""

    name: str
    every: Duration
    lead: Duration = 3 * 86400.0
    description: str = ""
    work_order: WorkOrderPolicy


class DeviceProfile(_Strict):
    """Everything the platform knows about one device kind."""

    kind: str
    description: str
    sampling_period: Duration
    """Seconds between telemetry messages in normal operation."""
    offline_after: Duration
    """Seconds without any message (telemetry or status) before the device counts as offline."""
    fields: dict[str, FieldSpec]
    required: tuple[str, ...] = ()
    """Fields every telemetry message must carry; the rest are optional."""
    detectors: tuple[DetectorSpec, ...] = ()
    events: dict[str, EventSpec]
    device_events: dict[str, str] = Field(default_factory=dict)
    """Device-native ``.../event`` payload ``type`` -> event type it raises directly."""
    maintenance: tuple[MaintenancePlanSpec, ...] = ()

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind {value!r}; expected one of {', '.join(KINDS)}")
        return value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in value:
            if not _NAME.match(name) or name == "ts":
                raise ValueError(f"field name {name!r} must be snake_case and not 'ts'")
        return value

    @field_validator("events")
    @classmethod
    def _event_names(cls, value: dict[str, EventSpec]) -> dict[str, EventSpec]:
        for name in value:
            if not _EVENT_TYPE.match(name):
                raise ValueError(f"event type {name!r} must look like 'kind.what'")
        return value

    @model_validator(mode="after")
    def _references(self) -> DeviceProfile:
        for name in self.required:
            if name not in self.fields:
                raise ValueError(f"required field {name!r} is not declared in fields")
        for det in self.detectors:
            for name in det.fields:
                if name not in self.fields:
                    raise ValueError(f"detector {det.name!r} reads unknown field {name!r}")
            if det.event is not None and det.event not in self.events:
                raise ValueError(f"detector {det.name!r} raises undeclared event {det.event!r}")
        for native, event in self.device_events.items():
            if event not in self.events:
                raise ValueError(f"device event {native!r} maps to undeclared event {event!r}")
        return self

    def field_by_alias(self) -> dict[str, str]:
        """Map every field name and alias (case-insensitive) to the field name."""
        out: dict[str, str] = {}
        for name, spec in self.fields.items():
            out[name.lower()] = name
            for alias in spec.aliases:
                out[alias.lower()] = name
        return out
