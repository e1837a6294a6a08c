"""The work-order state machine: allowed transitions, who may make them, their side effects
on the SLA clocks, and the audit trail every change leaves.

States: open -> assigned -> in_progress -> resolved -> closed, with on_hold as a pause (the
resolve clock stops: ``resolve_due`` moves on by the time held) and cancelled as an exit.
``closed`` and ``cancelled`` are final for people; only the engine reopens a closed order, as
rework, when the same fault comes back within the rework window. Resolving a device's order
records a maintenance visit in the device's history.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cloud import changes
from cloud.models import MaintenanceVisit, WorkOrder, WorkOrderAudit

TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"assigned", "on_hold", "cancelled"}),
    "assigned": frozenset({"open", "in_progress", "on_hold", "cancelled"}),
    "in_progress": frozenset({"on_hold", "resolved", "cancelled"}),
    "on_hold": frozenset({"open", "assigned", "in_progress", "cancelled"}),
    "resolved": frozenset({"closed", "in_progress"}),
    "closed": frozenset(),
    "cancelled": frozenset(),
}
MANAGERS = frozenset({"admin", "dispatcher"})
FIELD_ROLES = frozenset({"technician", "security"})
"""Roles that work orders in the field: they take, start, pause and resolve their own orders."""
_FIELD_MOVES = frozenset({"assigned", "in_progress", "on_hold", "resolved"})
SYSTEM = "system"


class TransitionError(ValueError):
    """The move is not allowed from the order's current state (or lacks a required field)."""


class NotPermitted(PermissionError):
    """The caller's role may not make this change to this order."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: a user (name and role) or the engine itself (``system``)."""

    name: str
    role: str

    @property
    def is_manager(self) -> bool:
        return self.role in MANAGERS or self.role == SYSTEM


ENGINE = Actor(SYSTEM, SYSTEM)


def audit(
    session: Session, order: WorkOrder, actor: Actor, action: str, now: float,
    from_state: str | None = None, to_state: str | None = None, note: str = "",
) -> None:
    session.add(
        WorkOrderAudit(
            work_order_id=order.id, ts=now, actor=actor.name, action=action,
            from_state=from_state, to_state=to_state, note=note,
        )
    )


def transition(
    session: Session, order: WorkOrder, to: str, actor: Actor, now: float,
    note: str = "", assignee: str | None = None,
) -> None:
    """Move ``order`` to ``to``, updating clocks, audit trail and change log.

    Raises :class:`TransitionError` for a move the state machine forbids and
    :class:`NotPermitted` for one the actor's role may not make.
    """
    current = order.state
    if to not in TRANSITIONS:
        raise TransitionError(f"unknown state {to!r}")
    if to not in TRANSITIONS[current]:
        raise TransitionError(f"cannot go from {current} to {to}")
    _check_permission(order, to, actor, assignee)
    if to == "assigned":
        who = assignee or (actor.name if actor.role in FIELD_ROLES else None) or order.assignee
        if not who:
            raise TransitionError("assigning needs an assignee")
        order.assignee = who
        if who == actor.name:
            _acknowledge(order, now)
    if current == "on_hold":
        _release_hold(order, now)
    if to == "open":
        order.assignee = None
    elif to == "in_progress":
        _acknowledge(order, now)
        order.started_at = order.started_at or now
    elif to == "on_hold":
        order.hold_since = now
    elif to == "resolved":
        order.resolved_at = now
        if now > order.resolve_due:
            order.resolve_breached = True
        if order.device_id is not None:
            session.add(MaintenanceVisit(
                site_id=order.site_id, device_id=order.device_id, ts=now,
                technician=order.assignee or actor.name, work_order_id=order.id,
                notes=f"resolved #{order.id} {order.title}" + (f": {note}" if note else ""),
                parts=[],
            ))
    elif to == "closed":
        order.closed_at = now
    elif to == "cancelled":
        order.cancelled_at = now
    if current == "resolved" and to == "in_progress":
        order.resolved_at = None
    order.state = to
    session.flush()
    audit(session, order, actor, "transition", now, current, to, note)
    changes.record(session, order, "work_order.state", now)


def acknowledge(session: Session, order: WorkOrder, actor: Actor, now: float) -> None:
    """The assignee (or a dispatcher on their behalf) confirms the order: the response SLA."""
    if not actor.is_manager and order.assignee != actor.name:
        raise NotPermitted("only the assignee or a dispatcher acknowledges an order")
    if order.state not in ("assigned", "in_progress"):
        raise TransitionError(f"an order in state {order.state} cannot be acknowledged")
    if order.acknowledged_at is not None:
        return
    _acknowledge(order, now)
    session.flush()
    audit(session, order, actor, "acknowledge", now, order.state, order.state)
    changes.record(session, order, "work_order.acknowledged", now)


def rate(
    session: Session, order: WorkOrder, actor: Actor, rating: int, now: float,
    comment: str | None = None,
) -> None:
    """Owner satisfaction (1 to 5), given once the order is closed, by its reporter or a manager."""
    if not 1 <= rating <= 5:
        raise TransitionError("a rating is 1 to 5")
    if order.state != "closed":
        raise TransitionError("only a closed order can be rated")
    if not actor.is_manager and order.reporter != actor.name:
        raise NotPermitted("only the reporter or a dispatcher rates an order")
    order.rating = rating
    order.rating_comment = comment
    session.flush()
    note = f"rating {rating}" + (f": {comment}" if comment else "")
    audit(session, order, actor, "rate", now, note=note)
    changes.record(session, order, "work_order.rated", now)


def reopen_as_rework(session: Session, order: WorkOrder, now: float, note: str) -> None:
    """The engine reopens a closed (or resolved) order whose fault came back.

    The SLA clocks restart from ``now``; the order keeps its id, history and first opening.
    """
    previous = order.state
    order.state = "open"
    order.rework = True
    order.rework_count += 1
    order.assignee = None
    order.acknowledged_at = None
    order.started_at = None
    order.resolved_at = None
    order.closed_at = None
    order.hold_since = None
    order.condition_cleared = False
    order.escalation_level = 0
    order.escalated_at = None
    order.response_due = now + order.response_sla
    order.resolve_due = now + order.resolve_sla
    session.flush()
    audit(session, order, ENGINE, "rework", now, previous, "open", note)
    changes.record(session, order, "work_order.reopened", now)


def _acknowledge(order: WorkOrder, now: float) -> None:
    if order.acknowledged_at is None:
        order.acknowledged_at = now
        if now > order.response_due:
            order.response_breached = True


def _release_hold(order: WorkOrder, now: float) -> None:
    if order.hold_since is not None:
        held = max(0.0, now - order.hold_since)
        order.held_seconds += held
        order.resolve_due += held
        order.hold_since = None


def _check_permission(order: WorkOrder, to: str, actor: Actor, assignee: str | None) -> None:
    if actor.is_manager:
        return
    if actor.role not in FIELD_ROLES:
        raise NotPermitted(f"role {actor.role} may not change work orders")
    if to not in _FIELD_MOVES:
        raise NotPermitted(f"role {actor.role} may not move an order to {to}")
    if to == "assigned" and order.state == "open":
        if assignee not in (None, actor.name):
            raise NotPermitted("a technician may only take an order for themselves")
        return
    if order.assignee != actor.name:
        raise NotPermitted("only the assignee works this order")
