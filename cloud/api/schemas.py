"""Request and reply shapes of the API that are not shared contracts."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from device_profiles.messages import WorkOrderPublic, WorkOrderState
from device_profiles.schema import Category


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenReply(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: float


class Me(BaseModel):
    username: str
    role: str
    sites: list[str] | None


class SitePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    created_at: float


class DevicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: str
    device_id: str
    kind: str
    building: str | None = None
    unit: str | None = None
    floor: int | None = None
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    install_date: str | None = None
    warranty_end: str | None = None
    created_at: float


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: str
    site_id: str
    device_id: str
    kind: str
    type: str
    severity: str
    state: str
    ts: float
    received_at: float
    evidence: dict[str, object]
    forecast: dict[str, object] | None = None
    work_order_id: int | None = None


class VisitPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    site_id: str
    device_id: str
    ts: float
    technician: str | None
    work_order_id: int | None
    notes: str
    parts: list[object]


class VisitCreate(_In):
    ts: float | None = Field(default=None, ge=0, le=1e11)
    work_order_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    notes: str = Field(default="", max_length=5000)
    parts: list[str] = Field(default_factory=list, max_length=100)


class TimelineEntry(BaseModel):
    ts: float
    type: Literal["event", "work_order", "visit"]
    summary: str
    ref: str


class DeviceDetail(BaseModel):
    device: DevicePublic
    events: list[EventPublic]
    work_orders: list[WorkOrderPublic]
    visits: list[VisitPublic]
    timeline: list[TimelineEntry]


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    work_order_id: int
    ts: float
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    note: str


class TransitionRequest(_In):
    to: WorkOrderState
    note: str = Field(default="", max_length=2000)
    assignee: str | None = Field(default=None, min_length=1, max_length=64)


class RatingRequest(_In):
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class ReportCreate(_In):
    """A person's report: becomes an order dispatched like any other."""

    site_id: str = Field(min_length=1, max_length=64)
    category: Category
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    location: str | None = Field(default=None, max_length=300)
    photos: list[str] = Field(default_factory=list, max_length=10)
    """Photo references (URLs or stored evidence ids)."""
    device_id: str | None = Field(default=None, min_length=1, max_length=128)
    emergency: bool = False


class ImportResult(BaseModel):
    created: int
    updated: int


class DeviceUpdate(_In):
    """Ledger fields to change; absent fields stay as they are."""

    building: str | None = Field(default=None, max_length=64)
    unit: str | None = Field(default=None, max_length=64)
    floor: int | None = Field(default=None, ge=-50, le=500)
    vendor: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=128)
    serial: str | None = Field(default=None, max_length=128)
    install_date: date | None = None
    warranty_end: date | None = None
