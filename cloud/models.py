"""The cloud's tables (SQLAlchemy 2 declarative). Alembic migrations in ``cloud/migrations``
create them; keep the two in step (``tests/test_cloud_migrations.py`` compares them).

Invariants the database itself enforces, so that several stateless workers can never break them:
- an event is stored once (primary key ``event_id``);
- at most one *active* order per (site, device, event type) (a partial unique index);
- at most one preventive order per (site, device, plan, due date).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ACTIVE_STATES: tuple[str, ...] = ("open", "assigned", "in_progress", "on_hold", "resolved")
"""States in which an order still counts as the device's open order for its fault."""
ACTIVE_SQL = "state IN ('open', 'assigned', 'in_progress', 'on_hold', 'resolved')"
"""The same states as SQL (also the partial unique index's predicate)."""


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float)


class Device(Base):
    """One row of the device ledger."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("site_id", "device_id", name="uq_devices_site_device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    device_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    building: Mapped[str | None] = mapped_column(String(64), default=None)
    unit: Mapped[str | None] = mapped_column(String(64), default=None)
    floor: Mapped[int | None] = mapped_column(Integer, default=None)
    vendor: Mapped[str | None] = mapped_column(String(128), default=None)
    model: Mapped[str | None] = mapped_column(String(128), default=None)
    serial: Mapped[str | None] = mapped_column(String(128), default=None)
    install_date: Mapped[str | None] = mapped_column(String(10), default=None)
    warranty_end: Mapped[str | None] = mapped_column(String(10), default=None)
    created_at: Mapped[float] = mapped_column(Float)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_site_device_ts", "site_id", "device_id", "ts"),)

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gateway_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    ts: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    forecast: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    work_order_id: Mapped[int | None] = mapped_column(
        ForeignKey("work_orders.id"), default=None, index=True
    )


class WorkOrder(Base):
    __tablename__ = "work_orders"
    __table_args__ = (
        Index(
            "uq_work_orders_one_active",
            "site_id", "device_id", "event_type",
            unique=True,
            sqlite_where=text(ACTIVE_SQL),
            postgresql_where=text(ACTIVE_SQL),
        ),
        UniqueConstraint("site_id", "device_id", "plan_name", "due_at", name="uq_work_orders_plan"),
        Index("ix_work_orders_site_state", "site_id", "state"),
        Index("ix_work_orders_site_device", "site_id", "device_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    device_id: Mapped[str | None] = mapped_column(String(128), default=None)
    kind: Mapped[str | None] = mapped_column(String(32), default=None)
    event_type: Mapped[str | None] = mapped_column(String(64), default=None)
    source: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str | None] = mapped_column(String(300), default=None)
    photos: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reporter: Mapped[str | None] = mapped_column(String(64), default=None)
    category: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(4))
    team: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[float] = mapped_column(Float)
    response_sla: Mapped[float] = mapped_column(Float)
    resolve_sla: Mapped[float] = mapped_column(Float)
    response_due: Mapped[float] = mapped_column(Float)
    resolve_due: Mapped[float] = mapped_column(Float)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    last_event_at: Mapped[float | None] = mapped_column(Float, default=None)
    condition_cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    assignee: Mapped[str | None] = mapped_column(String(64), default=None)
    acknowledged_at: Mapped[float | None] = mapped_column(Float, default=None)
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    hold_since: Mapped[float | None] = mapped_column(Float, default=None)
    held_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    resolved_at: Mapped[float | None] = mapped_column(Float, default=None)
    closed_at: Mapped[float | None] = mapped_column(Float, default=None)
    cancelled_at: Mapped[float | None] = mapped_column(Float, default=None)
    rework: Mapped[bool] = mapped_column(Boolean, default=False)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    response_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    resolve_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[float | None] = mapped_column(Float, default=None)
    plan_name: Mapped[str | None] = mapped_column(String(64), default=None)
    due_at: Mapped[float | None] = mapped_column(Float, default=None)
    rating: Mapped[int | None] = mapped_column(Integer, default=None)
    rating_comment: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class WorkOrderAudit(Base):
    """One change of an order: who, when, from, to, what and why."""

    __tablename__ = "work_order_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    work_order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16), default=None)
    to_state: Mapped[str | None] = mapped_column(String(16), default=None)
    note: Mapped[str] = mapped_column(Text, default="")


class Change(Base):
    """The change log: one row per work-order change, read by the SSE stream and webhooks.

    Workers share nothing in memory, so every notification is fed from this table by id.
    """

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_site_id", "site_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    site_id: Mapped[str] = mapped_column(String(64))
    work_order_id: Mapped[int | None] = mapped_column(Integer, default=None)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    team: Mapped[str | None] = mapped_column(String(64), default=None)
    on_shift: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class UserSite(Base):
    """A site a user may see; ``*`` means every site."""

    __tablename__ = "user_sites"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class GatewayToken(Base):
    __tablename__ = "gateway_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)


class Webhook(Base):
    """A subscriber to work-order changes; delivery state lives here, not in a worker."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(200))
    site_id: Mapped[str | None] = mapped_column(String(64), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    """Id of the last change delivered."""
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered: Mapped[int] = mapped_column(Integer, default=0)


class MaintenanceVisit(Base):
    """A technician's visit to a device, with the parts replaced."""

    __tablename__ = "maintenance_visits"
    __table_args__ = (Index("ix_visits_site_device", "site_id", "device_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[float] = mapped_column(Float)
    technician: Mapped[str | None] = mapped_column(String(64), default=None)
    work_order_id: Mapped[int | None] = mapped_column(Integer, default=None)
    notes: Mapped[str] = mapped_column(Text, default="")
    parts: Mapped[list[Any]] = mapped_column(JSON, default=list)
