"""Opening orders (from events, reports and plans) and dispatching them to a technician."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cloud import changes
from cloud.lifecycle import SYSTEM, Actor, audit, transition
from cloud.models import ACTIVE_STATES, User, UserSite, WorkOrder
from device_profiles.schema import WorkOrderPolicy

DISPATCHER = Actor("auto-dispatch", SYSTEM)


def new_order(
    *, site_id: str, policy: WorkOrderPolicy, source: str, title: str, opened_at: float,
    device_id: str | None = None, kind: str | None = None, event_type: str | None = None,
    description: str = "", location: str | None = None, reporter: str | None = None,
    photos: list[str] | None = None, plan_name: str | None = None, due_at: float | None = None,
) -> WorkOrder:
    """An order in state ``open`` with its SLA clocks set from ``policy`` (not yet added)."""
    return WorkOrder(
        site_id=site_id, device_id=device_id, kind=kind, event_type=event_type, source=source,
        title=title[:300], description=description, location=location, reporter=reporter,
        photos=list(photos or []), category=policy.category, priority=policy.priority,
        team=policy.team, state="open", opened_at=opened_at,
        response_sla=policy.response_sla, resolve_sla=policy.resolve_sla,
        response_due=opened_at + policy.response_sla, resolve_due=opened_at + policy.resolve_sla,
        event_count=0, condition_cleared=False, held_seconds=0.0, rework=False, rework_count=0,
        response_breached=False, resolve_breached=False, escalation_level=0,
        plan_name=plan_name, due_at=due_at,
    )


def announce_new(session: Session, order: WorkOrder, now: float, actor: Actor, note: str) -> None:
    """Audit and change-log a freshly flushed order, then try to dispatch it."""
    audit(session, order, actor, "create", now, None, "open", note)
    changes.record(session, order, "work_order.created", now)
    dispatch(session, order, now)


def dispatch(session: Session, order: WorkOrder, now: float) -> str | None:
    """Assign ``order`` to the least-loaded on-shift technician of its team, if there is one.

    Candidates: active users of a field role whose ``team`` is the order's team and who may
    see the order's site. Load is their number of active orders; ties go to the name. With
    nobody on shift the order stays open for a dispatcher.
    """
    candidates = list(
        session.execute(
            select(User.username)
            .join(UserSite, UserSite.user_id == User.id)
            .where(
                User.active.is_(True), User.on_shift.is_(True), User.team == order.team,
                User.role.in_(("technician", "security")),
                or_(UserSite.site_id == order.site_id, UserSite.site_id == "*"),
            )
            .distinct()
        ).scalars()
    )
    if not candidates:
        return None
    rows = session.execute(
        select(WorkOrder.assignee, func.count())
        .where(WorkOrder.assignee.in_(candidates), WorkOrder.state.in_(ACTIVE_STATES))
        .group_by(WorkOrder.assignee)
    )
    loads = {str(row[0]): int(row[1]) for row in rows}
    chosen = min(candidates, key=lambda name: (loads.get(name, 0), name))
    transition(session, order, "assigned", DISPATCHER, now, note="least-loaded on shift",
               assignee=chosen)
    return chosen
