"""Work orders: list, read, audit trail, transitions, acknowledgement, rating, reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from cloud.api.deps import CtxDep, CurrentUser, Principal, SessionDep, not_found
from cloud.api.schemas import AuditPublic, RatingRequest, ReportCreate, TransitionRequest
from cloud.changes import public
from cloud.lifecycle import NotPermitted, TransitionError, acknowledge, rate, transition
from cloud.models import ACTIVE_STATES, Site, WorkOrder, WorkOrderAudit
from cloud.orders import announce_new, new_order
from cloud.reports import report_policy
from device_profiles.messages import WorkOrderPublic, WorkOrderState
from device_profiles.schema import Priority

router = APIRouter(prefix="/api/v1", tags=["work orders"])
OrderId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: {"description": "no such order on the caller's sites"}}
_CONFLICT: Responses = {409: {"description": "the move is not allowed from the current state"}}
_FORBIDDEN: Responses = {403: {"description": "the caller's role may not do this"}}


def _visible(session: Session, user: Principal, order_id: int) -> WorkOrder:
    order = session.get(WorkOrder, order_id)
    if order is None or not user.can_see(order.site_id):
        raise not_found("work order")
    return order


@router.get("/work-orders", response_model=list[WorkOrderPublic])
def list_work_orders(
    user: CurrentUser, session: SessionDep,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    state: WorkOrderState | None = None,
    device_id: Annotated[str | None, Query(max_length=128)] = None,
    event_type: Annotated[str | None, Query(max_length=64)] = None,
    priority: Priority | None = None,
    active: bool | None = None,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
    reporter: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[WorkOrderPublic]:
    """Orders on the caller's sites, newest first, filtered by the given fields.

    ``assignee=me`` / ``reporter=me`` stand for the caller (a technician's own orders, the
    reports a resident follows).
    """
    stmt = user.scope(select(WorkOrder), WorkOrder.site_id)
    if site_id is not None:
        stmt = stmt.where(WorkOrder.site_id == site_id)
    if state is not None:
        stmt = stmt.where(WorkOrder.state == state)
    if device_id is not None:
        stmt = stmt.where(WorkOrder.device_id == device_id)
    if event_type is not None:
        stmt = stmt.where(WorkOrder.event_type == event_type)
    if priority is not None:
        stmt = stmt.where(WorkOrder.priority == priority)
    if assignee is not None:
        stmt = stmt.where(WorkOrder.assignee == (user.username if assignee == "me" else assignee))
    if reporter is not None:
        stmt = stmt.where(WorkOrder.reporter == (user.username if reporter == "me" else reporter))
    if active is not None:
        cond = WorkOrder.state.in_(ACTIVE_STATES)
        stmt = stmt.where(cond if active else ~cond)
    stmt = stmt.order_by(WorkOrder.id.desc()).limit(limit).offset(offset)
    return [public(o) for o in session.scalars(stmt)]


@router.get("/work-orders/{order_id}", response_model=WorkOrderPublic, responses=_NOT_FOUND)
def get_work_order(
    order_id: OrderId, user: CurrentUser, session: SessionDep
) -> WorkOrderPublic:
    return public(_visible(session, user, order_id))


@router.get(
    "/work-orders/{order_id}/audit", response_model=list[AuditPublic], responses=_NOT_FOUND
)
def get_audit(
    order_id: OrderId, user: CurrentUser, session: SessionDep
) -> list[AuditPublic]:
    """The order's audit trail: every change, who made it, when, from and to which state."""
    _visible(session, user, order_id)
    rows = session.scalars(
        select(WorkOrderAudit).where(WorkOrderAudit.work_order_id == order_id)
        .order_by(WorkOrderAudit.id)
    )
    return [AuditPublic.model_validate(r) for r in rows]


@router.post(
    "/work-orders/{order_id}/transition", response_model=WorkOrderPublic,
    responses={**_NOT_FOUND, **_CONFLICT, **_FORBIDDEN},
)
def post_transition(
    order_id: OrderId, body: TransitionRequest, user: CurrentUser,
    session: SessionDep, ctx: CtxDep,
) -> WorkOrderPublic:
    """Move the order to another state (the state machine and the caller's role decide)."""
    with _changing(session):
        order = _visible(session, user, order_id)
        transition(session, order, body.to, user.actor, ctx.clock.now(), body.note, body.assignee)
        return public(order)


@router.post(
    "/work-orders/{order_id}/acknowledge", response_model=WorkOrderPublic,
    responses={**_NOT_FOUND, **_CONFLICT, **_FORBIDDEN},
)
def post_acknowledge(
    order_id: OrderId, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> WorkOrderPublic:
    """The assignee confirms the order; this stops the response clock."""
    with _changing(session):
        order = _visible(session, user, order_id)
        acknowledge(session, order, user.actor, ctx.clock.now())
        return public(order)


@router.post(
    "/work-orders/{order_id}/rating", response_model=WorkOrderPublic,
    responses={**_NOT_FOUND, **_CONFLICT, **_FORBIDDEN},
)
def post_rating(
    order_id: OrderId, body: RatingRequest, user: CurrentUser,
    session: SessionDep, ctx: CtxDep,
) -> WorkOrderPublic:
    """Satisfaction 1 to 5 for a closed order, by its reporter or a dispatcher."""
    with _changing(session):
        order = _visible(session, user, order_id)
        rate(session, order, user.actor, body.rating, ctx.clock.now(), body.comment)
        return public(order)


@router.post(
    "/reports", response_model=WorkOrderPublic, status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "no such site for the caller"}},
)
def post_report(
    body: ReportCreate, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> WorkOrderPublic:
    """A resident's or staff member's report; it becomes an order dispatched like any other."""
    if not user.can_see(body.site_id) or session.get(Site, body.site_id) is None:
        raise not_found("site")
    now = ctx.clock.now()
    with _changing(session):
        order = new_order(
            site_id=body.site_id, policy=report_policy(body.category, body.emergency),
            source="report", title=body.title, opened_at=now, device_id=body.device_id,
            description=body.description, location=body.location, reporter=user.username,
            photos=body.photos,
        )
        session.add(order)
        session.flush()
        announce_new(session, order, now, user.actor, "reported")
        return public(order)


class _changing:
    """Commit on success; map engine errors to HTTP answers (409, 403) and roll back."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self._session.commit()
            return
        self._session.rollback()
        if isinstance(exc, TransitionError):
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        if isinstance(exc, NotPermitted):
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        if isinstance(exc, StaleDataError):
            raise HTTPException(
                status.HTTP_409_CONFLICT, "the order changed meanwhile; reload and retry"
            ) from exc
