"""Event intake: store each event once, and turn raised events into work orders.

Promises, under any number of concurrent workers on PostgreSQL (or one on SQLite):
- an ``event_id`` is stored once; a resent event is reported as a duplicate and changes nothing;
- at most one active order per (site, device, event type): a raised event opens one or attaches
  to the active one (its count grows); the database's partial unique index decides races, and
  the loser of a race attaches to the winner's order (savepoint, re-select);
- a raised event within the rework window after the order was closed reopens it as rework;
- a cleared event marks the active order ``condition_cleared`` without closing it;
- events whose profile spec has no work-order policy are recorded but open nothing.
A batch is one transaction: either all its accepted events and their effects are stored or none.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from cloud import changes
from cloud.bulk import upsert_ignore, writer_for
from cloud.changes import public
from cloud.clock import Clock
from cloud.db import Database
from cloud.lifecycle import ENGINE, reopen_as_rework
from cloud.models import ACTIVE_STATES, Device, WorkOrder
from cloud.orders import announce_new, dispatch, new_order
from cloud.policies import PolicyBook, UnknownEventType
from device_profiles.messages import Event, EventBatch, EventBatchResult, EventRejection
from device_profiles.schema import WorkOrderPolicy

log = logging.getLogger(__name__)
_RETRYABLE_PG = frozenset({"40001", "40P01"})
_MAX_ATTEMPTS = 6
_CHUNK = 1000


@dataclass
class IntakeCounters:
    """Per-process counts, for logs and ``/healthz``."""

    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _Group:
    device_id: str
    kind: str
    event_type: str
    policy: WorkOrderPolicy
    raised: list[Event] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    latest: Event | None = None


class _OrdersMoved(RuntimeError):
    """An order the batch attaches to left the active states meanwhile: redo the batch."""


class Intake:
    """Takes event batches of one authenticated site."""

    def __init__(self, db: Database, policies: PolicyBook, clock: Clock,
                 rework_window: float) -> None:
        self._db = db
        self._policies = policies
        self._clock = clock
        self._rework_window = rework_window
        self._bulk = writer_for(db.dialect)
        self.counters = IntakeCounters()

    def ingest(self, site_id: str, batch: EventBatch) -> EventBatchResult:
        """Store ``batch`` for ``site_id``; retried whole on a deadlock or serialization failure."""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                with self._db.session() as session, session.begin():
                    result = self._ingest(session, site_id, batch)
                break
            except DBAPIError as exc:
                code = getattr(getattr(exc, "orig", None), "sqlstate", None)
                if code not in _RETRYABLE_PG or attempt == _MAX_ATTEMPTS:
                    raise
                self.counters.retries += 1
                log.info("intake retry %d after %s", attempt, code)
            except _OrdersMoved as exc:
                if attempt == _MAX_ATTEMPTS:
                    raise
                self.counters.retries += 1
                log.info("intake retry %d: %s", attempt, exc)
        self.counters.batches += 1
        self.counters.accepted += len(result.accepted)
        self.counters.duplicates += len(result.duplicates)
        self.counters.rejected += len(result.rejected)
        for rej in result.rejected:
            self.counters.reasons[rej.reason.split(":")[0]] += 1
        return result

    def _ingest(self, session: Session, site_id: str, batch: EventBatch) -> EventBatchResult:
        now = self._clock.now()
        rejected: list[EventRejection] = []
        duplicates: list[str] = []
        valid: dict[str, Event] = {}
        for ev in batch.events:
            reason = self._reject_reason(site_id, ev)
            if reason is not None:
                rejected.append(EventRejection(event_id=ev.event_id, reason=reason))
            elif ev.event_id in valid:
                duplicates.append(ev.event_id)
            else:
                valid[ev.event_id] = ev
        if valid:
            mismatched = self._ensure_devices(session, site_id, list(valid.values()), now)
            for event_id in sorted(valid):
                ev = valid[event_id]
                if ev.device_id in mismatched:
                    rejected.append(EventRejection(
                        event_id=event_id,
                        reason=f"kind mismatch: device {ev.device_id} is a "
                               f"{mismatched[ev.device_id]}, not a {ev.kind}",
                    ))
                    del valid[event_id]
        accepted = self._insert_events(session, list(valid.values()), now)
        duplicates.extend(e for e in sorted(valid) if e not in accepted)
        self._apply_to_orders(session, site_id, [valid[e] for e in sorted(accepted)], now)
        return EventBatchResult(
            accepted=sorted(accepted), duplicates=duplicates, rejected=rejected
        )

    def _reject_reason(self, site_id: str, ev: Event) -> str | None:
        if ev.site_id != site_id:
            return f"wrong site: the gateway token belongs to site {site_id}, not {ev.site_id}"
        try:
            self._policies.event_spec(ev.kind, ev.type)
        except UnknownEventType as exc:
            return f"unknown event type: {exc}"
        return None

    def _ensure_devices(
        self, session: Session, site_id: str, events: list[Event], now: float
    ) -> dict[str, str]:
        """Register unseen devices in the ledger; return {device_id: kind} of kind mismatches."""
        kinds = {ev.device_id: ev.kind for ev in events}
        rows = session.execute(
            select(Device.device_id, Device.kind).where(
                Device.site_id == site_id, Device.device_id.in_(sorted(kinds))
            )
        )
        known = {str(row[0]): str(row[1]) for row in rows}
        missing = [
            {"site_id": site_id, "device_id": d, "kind": k, "created_at": now}
            for d, k in sorted(kinds.items()) if d not in known
        ]
        if missing:
            session.execute(
                self._insert(Device).on_conflict_do_nothing(
                    index_elements=["site_id", "device_id"]
                ),
                missing,
            )
        return {
            ev.device_id: known[ev.device_id]
            for ev in events
            if ev.device_id in known and known[ev.device_id] != ev.kind
        }

    def _insert_events(self, session: Session, events: list[Event], now: float) -> set[str]:
        """Insert new events (executemany, ON CONFLICT DO NOTHING); return the ids stored now."""
        if not events:
            return set()
        rows = [_event_row(ev, now) for ev in sorted(events, key=lambda e: e.event_id)]
        return self._bulk.insert_events(session.connection(), rows)

    def _apply_to_orders(
        self, session: Session, site_id: str, events: list[Event], now: float
    ) -> None:
        groups: dict[tuple[str, str], _Group] = {}
        for ev in events:
            policy = self._policies.event_spec(ev.kind, ev.type).work_order
            if policy is None:
                continue
            key = (ev.device_id, ev.type)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(ev.device_id, ev.kind, ev.type, policy)
            group.events.append(ev)
            if ev.state == "raised":
                group.raised.append(ev)
            if group.latest is None or (ev.ts, ev.state == "cleared") >= (
                group.latest.ts, group.latest.state == "cleared"
            ):
                group.latest = ev
        if not groups:
            return
        active = self._active_many(session, site_id, groups)
        attach: list[dict[str, Any]] = []
        notes: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for key in sorted(groups):
            group = groups[key]
            order = active.get(key)
            if order is not None and order.state != "resolved":
                self._plan_attach(order, group, attach, notes, now)
                order_id: int | None = order.id
            else:
                order_id = self._apply_group(session, site_id, group, now,
                                             checked=order is None)
            if order_id is not None:
                links.extend({"eid": ev.event_id, "wo": order_id} for ev in group.events)
        conn = session.connection()
        if attach:
            done = self._bulk.attach(conn, attach)
            if done != len(attach):
                raise _OrdersMoved(f"{len(attach) - done} order(s) closed under the intake")
        if notes:
            self._bulk.insert_changes(conn, notes)
        if links:
            self._bulk.link_events(conn, links)

    def _active_many(
        self, session: Session, site_id: str, groups: dict[tuple[str, str], _Group]
    ) -> dict[tuple[str, str], WorkOrder]:
        devices = sorted({d for d, _ in groups})
        types = sorted({t for _, t in groups})
        found: dict[tuple[str, str], WorkOrder] = {}
        for start in range(0, len(devices), _CHUNK):
            rows = session.scalars(
                select(WorkOrder).where(
                    WorkOrder.site_id == site_id, WorkOrder.state.in_(ACTIVE_STATES),
                    WorkOrder.device_id.in_(devices[start:start + _CHUNK]),
                    WorkOrder.event_type.in_(types),
                ).execution_options(populate_existing=True)
            )
            for order in rows:
                key = (str(order.device_id), str(order.event_type))
                if key in groups:
                    found[key] = order
        return found

    @staticmethod
    def _plan_attach(
        order: WorkOrder, group: _Group, attach: list[dict[str, Any]],
        notes: list[dict[str, Any]], now: float,
    ) -> None:
        """Queue the set-based update and the change-log row of one attach (the common case).

        The change's payload is the order as this transaction will leave it; under concurrent
        intakes the count it shows may lag by the other batch, the stored count never does.
        """
        n = len(group.raised)
        last, cleared = _after_batch(order, group)
        if not n and cleared == order.condition_cleared:
            return
        attach.append({"oid": order.id, "n": n, "last": last, "cleared": cleared})
        payload = public(order).model_copy(update={
            "event_count": order.event_count + n, "last_event_at": last,
            "condition_cleared": cleared,
        })
        notes.append({
            "ts": now, "site_id": order.site_id, "work_order_id": order.id,
            "topic": "work_order.event" if n else "work_order.cleared",
            "payload": payload.model_dump(mode="json"),
        })

    def _apply_group(
        self, session: Session, site_id: str, group: _Group, now: float, checked: bool = False
    ) -> int | None:
        """Open (or reopen) the group's order, or attach to the one a concurrent batch opened.

        ``checked``: the caller has just found no active order in this transaction, so the
        first attempt skips looking again; a concurrent opener is still caught, by the unique
        index on active orders, and the retry looks.
        """
        cleared = group.latest is not None and group.latest.state == "cleared"
        for attempt in range(_MAX_ATTEMPTS):
            order = None if checked and attempt == 0 else self._active(session, site_id, group)
            if order is not None:
                self._attach(session, order, group, now)
                return order.id
            if not group.raised:
                return None
            try:
                with session.begin_nested():
                    order = self._reopen_or_create(session, site_id, group, now)
                    if cleared:
                        order.condition_cleared = True
                    session.flush()
                return order.id
            except (IntegrityError, StaleDataError):
                log.debug("lost the race to open %s/%s; attaching", group.device_id,
                          group.event_type)
        raise RuntimeError(f"could not settle the order of {group.device_id}/{group.event_type}")

    def _active(self, session: Session, site_id: str, group: _Group) -> WorkOrder | None:
        return session.scalars(
            select(WorkOrder).where(
                WorkOrder.site_id == site_id, WorkOrder.device_id == group.device_id,
                WorkOrder.event_type == group.event_type, WorkOrder.state.in_(ACTIVE_STATES),
            ).execution_options(populate_existing=True)
        ).first()

    def _attach(self, session: Session, order: WorkOrder, group: _Group, now: float) -> None:
        n = len(group.raised)
        last, cleared = _after_batch(order, group)
        values: dict[str, Any] = {"version": WorkOrder.version + 1}
        if n:
            values["event_count"] = WorkOrder.event_count + n
            values["last_event_at"] = last
        values["condition_cleared"] = cleared
        if not n and cleared == order.condition_cleared:
            return
        if order.state == "resolved" and n and not cleared:
            reopen_as_rework(session, order, now, "fault came back before the order was closed")
            order.event_count += n
            order.last_event_at = last
            session.flush()
            dispatch(session, order, now)
            return
        session.execute(
            update(WorkOrder).where(WorkOrder.id == order.id).values(**values)
            .execution_options(synchronize_session=False)
        )
        session.expire(order)
        topic = "work_order.event" if n else "work_order.cleared"
        changes.record(session, order, topic, now)

    def _reopen_or_create(
        self, session: Session, site_id: str, group: _Group, now: float
    ) -> WorkOrder:
        first = min(ev.ts for ev in group.raised)
        last = max(ev.ts for ev in group.raised)
        recent = session.scalars(
            select(WorkOrder).where(
                WorkOrder.site_id == site_id, WorkOrder.device_id == group.device_id,
                WorkOrder.event_type == group.event_type, WorkOrder.state == "closed",
                WorkOrder.closed_at >= now - self._rework_window,
            ).order_by(WorkOrder.closed_at.desc()).limit(1)
            .execution_options(populate_existing=True)
        ).first()
        if recent is not None:
            reopen_as_rework(session, recent, now, "same fault within the rework window")
            recent.event_count += len(group.raised)
            recent.last_event_at = last
            session.flush()
            dispatch(session, recent, now)
            return recent
        spec = self._policies.event_spec(group.kind, group.event_type)
        order = new_order(
            site_id=site_id, policy=group.policy, source="event",
            title=f"{group.event_type} on {group.device_id}", description=spec.description,
            opened_at=min(first, now), device_id=group.device_id, kind=group.kind,
            event_type=group.event_type,
        )
        order.event_count = len(group.raised)
        order.last_event_at = last
        session.add(order)
        session.flush()
        announce_new(session, order, now, ENGINE, f"raised by event {group.raised[0].event_id}")
        return order

    def _insert(self, table: Any) -> Any:
        return upsert_ignore(self._db.dialect, table)


def _after_batch(order: WorkOrder, group: _Group) -> tuple[float | None, bool]:
    """The order's last raised time and ``condition_cleared`` once ``group`` is applied.

    A device's events are expected in time order across batches (the edge's outbox sends them
    so); within a batch any order. A clear counts if it is at least as new as the newest raise;
    a raise newer than every earlier one makes the condition present again.
    """
    previous = order.last_event_at
    newest = max((ev.ts for ev in group.raised), default=None)
    last = newest if previous is None else max(previous, newest if newest is not None else previous)
    latest = group.latest
    if latest is not None and latest.state == "cleared" and (last is None or latest.ts >= last):
        return last, True
    if newest is not None and (previous is None or newest > previous):
        return last, False
    return last, order.condition_cleared


def _event_row(ev: Event, now: float) -> dict[str, Any]:
    return {
        "event_id": ev.event_id, "site_id": ev.site_id, "gateway_id": ev.gateway_id,
        "device_id": ev.device_id, "kind": ev.kind, "type": ev.type, "severity": ev.severity,
        "state": ev.state, "ts": ev.ts, "received_at": now, "evidence": ev.evidence,
        "forecast": ev.forecast.model_dump(mode="json") if ev.forecast else None,
        "work_order_id": None,
    }

