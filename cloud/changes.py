"""The change log: every work-order change becomes a row the stream and the webhooks read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import change_signal
from cloud.models import Change, WorkOrder
from device_profiles.messages import WorkOrderPublic


def public(order: WorkOrder) -> WorkOrderPublic:
    return WorkOrderPublic.model_validate(order)


def record(session: Session, order: WorkOrder, topic: str, now: float) -> None:
    """Append a change for ``order`` (call after the order's new state is set)."""
    change_signal.mark_change(session)
    session.add(
        Change(
            ts=now, site_id=order.site_id, work_order_id=order.id, topic=topic,
            payload=public(order).model_dump(mode="json"),
        )
    )


def since(
    session: Session, after_id: int, sites: frozenset[str] | None, limit: int = 500
) -> list[Change]:
    """Changes with id above ``after_id`` on ``sites`` (None: every site), oldest first."""
    stmt = select(Change).where(Change.id > after_id).order_by(Change.id).limit(limit)
    if sites is not None:
        stmt = stmt.where(Change.site_id.in_(sorted(sites)))
    return list(session.scalars(stmt))


def latest_id(session: Session) -> int:
    value = session.scalar(select(Change.id).order_by(Change.id.desc()).limit(1))
    return int(value or 0)


def as_message(change: Change) -> dict[str, Any]:
    return {
        "id": change.id, "ts": change.ts, "topic": change.topic, "site_id": change.site_id,
        "work_order_id": change.work_order_id, "work_order": change.payload,
    }
