"""SLA clocks and escalation.

A response breach: not acknowledged by ``response_due``. A resolve breach: not resolved by
``resolve_due`` (on_hold pauses that clock; see :mod:`cloud.lifecycle`). A breached order
escalates one step at a time through ``Settings.escalation_roles`` (dispatcher, supervisor,
manager), one step per ``escalation_step`` while the breach lasts; each step is audited and
published. Several workers may run this at once: the order's version column makes a step
happen once.
"""

from __future__ import annotations

import logging

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from cloud import changes
from cloud.lifecycle import ENGINE, audit
from cloud.models import WorkOrder

log = logging.getLogger(__name__)
_RUNNING = ("open", "assigned", "in_progress", "on_hold")


def breaches(order: WorkOrder, now: float) -> list[str]:
    """Which clocks of ``order`` are breached at ``now`` (``response``, ``resolve``)."""
    out = []
    if order.state in _RUNNING and order.acknowledged_at is None and now > order.response_due:
        out.append("response")
    if order.state in _RUNNING and order.state != "on_hold" and now > order.resolve_due:
        out.append("resolve")
    return out


def check_slas(
    session: Session, now: float, roles: tuple[str, ...], step: float, limit: int = 1000
) -> int:
    """Mark breaches and escalate due orders; return the number of escalation steps taken."""
    candidates = session.scalars(
        select(WorkOrder).where(
            WorkOrder.state.in_(_RUNNING),
            or_(
                and_(WorkOrder.acknowledged_at.is_(None), WorkOrder.response_due < now),
                and_(WorkOrder.state != "on_hold", WorkOrder.resolve_due < now),
            ),
        ).order_by(WorkOrder.id).limit(limit)
    ).all()
    steps = 0
    for order in candidates:
        try:
            with session.begin_nested():
                if _escalate(session, order, now, roles, step):
                    steps += 1
        except StaleDataError:
            log.debug("order %s changed under the SLA check; next pass", order.id)
    return steps


def _escalate(
    session: Session, order: WorkOrder, now: float, roles: tuple[str, ...], step: float
) -> bool:
    which = breaches(order, now)
    if not which:
        return False
    if "response" in which:
        order.response_breached = True
    if "resolve" in which:
        order.resolve_breached = True
    due = order.escalation_level == 0 or (
        order.escalated_at is not None and now >= order.escalated_at + step
    )
    if order.escalation_level >= len(roles) or not due:
        session.flush()
        return False
    order.escalation_level += 1
    order.escalated_at = now
    role = roles[order.escalation_level - 1]
    session.flush()
    note = f"{' and '.join(which)} SLA breached: escalated to {role}"
    audit(session, order, ENGINE, "escalation", now, order.state, order.state, note)
    changes.record(session, order, "work_order.escalated", now)
    return True
