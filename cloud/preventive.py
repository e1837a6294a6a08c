"""Preventive maintenance: orders from the profiles' plans, ahead of their due dates, and the
compliance report (done on time, late, missed).

A plan ``every`` E with ``lead`` L: a device's first visit is due E after its install date (or
its registration), each next one E after the previous due date. The order is opened L before
its due date; it must be resolved by ``due + resolve_sla`` to count as on time. The unique
(site, device, plan, due) constraint makes generation idempotent across workers and passes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.lifecycle import ENGINE
from cloud.models import Device, WorkOrder
from cloud.orders import announce_new, new_order
from cloud.policies import PolicyBook

log = logging.getLogger(__name__)
MAX_PER_PASS = 500
"""Orders generated per pass at most, so a large estate catches up over a few passes."""


def _anchor(device: Device) -> float:
    if device.install_date:
        try:
            day = datetime.fromisoformat(device.install_date).replace(tzinfo=UTC)
            return day.timestamp()
        except ValueError:
            log.warning("device %s/%s: bad install_date %r", device.site_id, device.device_id,
                        device.install_date)
    return device.created_at


def generate(session: Session, policies: PolicyBook, now: float) -> int:
    """Open every preventive order whose lead time has begun; return how many were opened.

    Periods whose whole window (due + resolve SLA) has passed before the plan reached a device
    are skipped rather than opened as instantly-missed orders: the first order is the next one
    that can still be done on time.
    """
    last_due: dict[tuple[str, str, str], float] = {}
    for r in session.execute(
        select(WorkOrder.site_id, WorkOrder.device_id, WorkOrder.plan_name,
               func.max(WorkOrder.due_at))
        .where(WorkOrder.source == "preventive").group_by(
            WorkOrder.site_id, WorkOrder.device_id, WorkOrder.plan_name)
    ):
        if r[3] is not None:
            last_due[(str(r[0]), str(r[1]), str(r[2]))] = float(r[3])
    opened = 0
    kinds = [k for k in policies.kinds() if policies.plans(k)]
    devices = session.scalars(select(Device).where(Device.kind.in_(kinds))
                              .order_by(Device.id)).all()
    for device in devices:
        for plan in policies.plans(device.kind):
            previous = last_due.get((device.site_id, device.device_id, plan.name))
            if previous is None:
                due = _anchor(device) + plan.every
                while due + plan.work_order.resolve_sla < now:
                    due += plan.every
            else:
                due = previous + plan.every
            while due - plan.lead <= now and opened < MAX_PER_PASS:
                order = new_order(
                    site_id=device.site_id, policy=plan.work_order, source="preventive",
                    title=f"{plan.name.replace('_', ' ')}: {device.device_id}",
                    description=plan.description, opened_at=now, device_id=device.device_id,
                    kind=device.kind, plan_name=plan.name, due_at=due,
                )
                order.resolve_due = max(order.resolve_due, due + plan.work_order.resolve_sla)
                try:
                    with session.begin_nested():
                        session.add(order)
                        session.flush()
                        announce_new(session, order, now, ENGINE, f"plan {plan.name} due")
                    opened += 1
                except IntegrityError:
                    log.debug("plan order %s/%s/%s already exists", device.device_id,
                              plan.name, due)
                due += plan.every
    return opened


@dataclass
class PlanCompliance:
    site_id: str
    kind: str
    plan: str
    total: int = 0
    on_time: int = 0
    late: int = 0
    missed: int = 0
    pending: int = 0

    @property
    def on_time_rate(self) -> float | None:
        decided = self.on_time + self.late + self.missed
        return self.on_time / decided if decided else None


def compliance(
    session: Session, sites: frozenset[str] | None, now: float,
    since: float | None = None, until: float | None = None,
) -> list[PlanCompliance]:
    """Per site and plan: visits due in [since, until] done on time, late, missed, pending.

    A visit is on time when resolved by its due date plus the plan's resolve SLA (plus any time
    on hold), whenever its order was opened; missed when that passed unresolved or it was
    cancelled.
    """
    stmt = select(WorkOrder).where(WorkOrder.source == "preventive")
    if sites is not None:
        stmt = stmt.where(WorkOrder.site_id.in_(sorted(sites)))
    if since is not None:
        stmt = stmt.where(WorkOrder.due_at >= since)
    if until is not None:
        stmt = stmt.where(WorkOrder.due_at <= until)
    out: dict[tuple[str, str, str], PlanCompliance] = {}
    for order in session.scalars(stmt):
        key = (order.site_id, order.kind or "", order.plan_name or "")
        row = out.setdefault(key, PlanCompliance(*key))
        row.total += 1
        due = order.due_at if order.due_at is not None else order.opened_at
        deadline = due + order.resolve_sla + order.held_seconds
        done = order.resolved_at or (order.closed_at if order.state == "closed" else None)
        if done is not None:
            if done <= deadline:
                row.on_time += 1
            else:
                row.late += 1
        elif order.state == "cancelled" or now > deadline:
            row.missed += 1
        else:
            row.pending += 1
    return [out[k] for k in sorted(out)]
