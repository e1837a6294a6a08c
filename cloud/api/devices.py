"""The device ledger: list, one device with its whole history, maintenance visits, CSV."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import CtxDep, CurrentUser, Principal, SessionDep, not_found
from cloud.api.schemas import (
    DeviceDetail,
    DevicePublic,
    DeviceUpdate,
    EventPublic,
    ImportResult,
    TimelineEntry,
    VisitCreate,
    VisitPublic,
)
from cloud.changes import public
from cloud.context import AppContext
from cloud.ledger_csv import COLUMNS, LedgerRow, RowError, parse_csv, to_csv
from cloud.models import Device, EventRow, MaintenanceVisit, Site, WorkOrder

router = APIRouter(prefix="/api/v1", tags=["devices"])
DeviceId = Annotated[str, Path(min_length=1, max_length=128)]
SiteQuery = Annotated[str | None, Query(max_length=64)]
Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: {"description": "no such device on the caller's sites"}}


def find_device(
    session: Session, user: Principal, device_id: str, site_id: str | None
) -> Device:
    """The caller's device ``device_id``; 404 if none, 409 if several sites have one."""
    stmt = user.scope(select(Device).where(Device.device_id == device_id), Device.site_id)
    if site_id is not None:
        stmt = stmt.where(Device.site_id == site_id)
    rows: list[Device] = list(session.scalars(stmt.limit(2)))
    if not rows:
        raise not_found("device")
    if len(rows) > 1:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "several of your sites have this device id: give site_id"
        )
    return rows[0]


@router.get("/devices", response_model=list[DevicePublic])
def list_devices(
    user: CurrentUser, session: SessionDep, site_id: SiteQuery = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[DevicePublic]:
    stmt = user.scope(select(Device), Device.site_id)
    if site_id is not None:
        stmt = stmt.where(Device.site_id == site_id)
    if kind is not None:
        stmt = stmt.where(Device.kind == kind)
    stmt = stmt.order_by(Device.site_id, Device.device_id).limit(limit).offset(offset)
    return [DevicePublic.model_validate(d) for d in session.scalars(stmt)]


@router.get(
    "/devices.csv", response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the ledger as CSV"}},
)
def export_devices(
    user: CurrentUser, session: SessionDep, site_id: SiteQuery = None
) -> PlainTextResponse:
    """The ledger of the caller's sites (or one site) as CSV, one device per line."""
    stmt = user.scope(select(Device), Device.site_id)
    if site_id is not None:
        stmt = stmt.where(Device.site_id == site_id)
    rows = [
        LedgerRow(**{c: getattr(d, c) for c in COLUMNS})
        for d in session.scalars(stmt.order_by(Device.site_id, Device.device_id))
    ]
    return PlainTextResponse(to_csv(rows), media_type="text/csv")


@router.post(
    "/devices/import", response_model=ImportResult,
    openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}}}}},
    responses={403: {"description": "only admins and dispatchers import"},
               422: {"description": "bad rows: nothing was imported"}},
)
async def import_devices(
    request: Request, user: CurrentUser, ctx: CtxDep, site_id: SiteQuery = None
) -> ImportResult:
    """Create or update ledger rows from CSV (columns as the export). All or nothing."""
    if user.role not in ("admin", "dispatcher"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins and dispatchers import")
    body = await request.body()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "CSV must be UTF-8") from exc
    return await run_in_threadpool(_import, ctx, user, text, site_id)


def _import(ctx: AppContext, user: Principal, text: str, site_id: str | None) -> ImportResult:
    rows, errors = parse_csv(text, site_id)
    with ctx.db.session() as session, session.begin():
        known = set(session.scalars(user.scope(select(Site.id), Site.id)))
        for i, row in enumerate(rows):
            if row.site_id not in known:
                errors.append(RowError(i + 2, f"no site {row.site_id!r} for you"))
        if errors:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [{"line": e.line, "error": e.error} for e in sorted(errors, key=lambda e: e.line)],
            )
        created = updated = 0
        now = ctx.clock.now()
        for row in rows:
            dev = session.scalars(select(Device).where(
                Device.site_id == row.site_id, Device.device_id == row.device_id)).first()
            if dev is None:
                dev = Device(site_id=row.site_id, device_id=row.device_id, kind=row.kind,
                             created_at=now)
                session.add(dev)
                created += 1
            else:
                updated += 1
            for col in COLUMNS[2:]:
                setattr(dev, col, getattr(row, col))
            session.flush()
    return ImportResult(created=created, updated=updated)


@router.get(
    "/devices/{device_id}", response_model=DeviceDetail,
    responses={**_NOT_FOUND, 409: {"description": "ambiguous: give site_id"}},
)
def get_device(
    device_id: DeviceId, user: CurrentUser, session: SessionDep, site_id: SiteQuery = None,
    events_limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> DeviceDetail:
    """The device's record and its whole history (events, orders, visits) in one timeline."""
    dev = find_device(session, user, device_id, site_id)
    events = list(session.scalars(
        select(EventRow).where(EventRow.site_id == dev.site_id, EventRow.device_id == device_id)
        .order_by(EventRow.ts.desc()).limit(events_limit)
    ))
    orders = list(session.scalars(
        select(WorkOrder).where(WorkOrder.site_id == dev.site_id, WorkOrder.device_id == device_id)
        .order_by(WorkOrder.opened_at.desc())
    ))
    visits = list(session.scalars(
        select(MaintenanceVisit).where(
            MaintenanceVisit.site_id == dev.site_id, MaintenanceVisit.device_id == device_id
        ).order_by(MaintenanceVisit.ts.desc())
    ))
    timeline = (
        [TimelineEntry(ts=e.ts, type="event", summary=f"{e.type} {e.state} ({e.severity})",
                       ref=e.event_id) for e in events]
        + [TimelineEntry(ts=o.opened_at, type="work_order",
                         summary=f"#{o.id} {o.title} [{o.state}]", ref=str(o.id)) for o in orders]
        + [TimelineEntry(ts=v.ts, type="visit",
                         summary=(v.notes or "maintenance visit")
                         + (f"; parts: {', '.join(map(str, v.parts))}" if v.parts else ""),
                         ref=str(v.id)) for v in visits]
    )
    timeline.sort(key=lambda t: t.ts, reverse=True)
    return DeviceDetail(
        device=DevicePublic.model_validate(dev),
        events=[EventPublic.model_validate(e) for e in events],
        work_orders=[public(o) for o in orders],
        visits=[VisitPublic.model_validate(v) for v in visits],
        timeline=timeline,
    )


@router.patch(
    "/devices/{device_id}", response_model=DevicePublic,
    responses={**_NOT_FOUND, 403: {"description": "admins and dispatchers only"}},
)
def patch_device(
    device_id: DeviceId, body: DeviceUpdate, user: CurrentUser, session: SessionDep,
    site_id: SiteQuery = None,
) -> DevicePublic:
    """Change a device's ledger record (location, vendor, model, serial, dates)."""
    if user.role not in ("admin", "dispatcher"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins and dispatchers only")
    dev = find_device(session, user, device_id, site_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(dev, name, value.isoformat() if isinstance(value, date) else value)
    session.commit()
    return DevicePublic.model_validate(dev)


@router.post(
    "/devices/{device_id}/visits", response_model=VisitPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**_NOT_FOUND, 403: {"description": "viewers may not record visits"}},
)
def post_visit(
    device_id: DeviceId, body: VisitCreate, user: CurrentUser, session: SessionDep,
    ctx: CtxDep, site_id: SiteQuery = None,
) -> VisitPublic:
    """Record a maintenance visit (and the parts replaced) in the device's history."""
    if user.role == "viewer":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "viewers may not record visits")
    dev = find_device(session, user, device_id, site_id)
    if body.work_order_id is not None:
        order = session.get(WorkOrder, body.work_order_id)
        if order is None or order.site_id != dev.site_id:
            raise not_found("work order")
    visit = MaintenanceVisit(
        site_id=dev.site_id, device_id=dev.device_id, ts=body.ts or ctx.clock.now(),
        technician=user.username, work_order_id=body.work_order_id, notes=body.notes,
        parts=list(body.parts),
    )
    session.add(visit)
    session.commit()
    return VisitPublic.model_validate(visit)
