"""KPIs (JSON and CSV), preventive-maintenance compliance, and webhook subscriptions."""

from __future__ import annotations

import csv
import io
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from cloud import kpis, preventive
from cloud.api.deps import CtxDep, CurrentUser, Principal, SessionDep, not_found
from cloud.models import Site, Webhook
from cloud.webhooks import start_after_latest

router = APIRouter(prefix="/api/v1", tags=["reports"])
Since = Annotated[float | None, Query(ge=0, le=1e11)]
SiteQuery = Annotated[str | None, Query(max_length=64)]
_DAY = 86400.0


def _period(ctx: CtxDep, since: float | None, until: float | None) -> tuple[float, float]:
    end = until if until is not None else ctx.clock.now()
    start = since if since is not None else end - 30 * _DAY
    if start > end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since is after until")
    return start, end


def _check_site(session: SessionDep, user: Principal, site_id: str | None) -> None:
    if site_id is not None and (not user.can_see(site_id) or session.get(Site, site_id) is None):
        raise not_found("site")


@router.get("/kpis", responses={404: {"description": "no such site for the caller"}})
def get_kpis(
    user: CurrentUser, session: SessionDep, ctx: CtxDep, site_id: SiteQuery = None,
    since: Since = None, until: Since = None,
) -> dict[str, Any]:
    """Response and resolve times, SLA compliance, completion, rework, MTTR/MTBF, satisfaction
    for orders opened in the period (default: the last 30 days)."""
    _check_site(session, user, site_id)
    start, end = _period(ctx, since, until)
    return kpis.compute(session, user.sites, start, end, site_id)


@router.get(
    "/kpis.csv", response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no such site"}},
)
def get_kpis_csv(
    user: CurrentUser, session: SessionDep, ctx: CtxDep, site_id: SiteQuery = None,
    since: Since = None, until: Since = None,
) -> PlainTextResponse:
    """The per-device figures (faults, MTTR, MTBF) as CSV."""
    _check_site(session, user, site_id)
    start, end = _period(ctx, since, until)
    report = kpis.compute(session, user.sites, start, end, site_id)
    return PlainTextResponse(kpis.per_device_csv(report), media_type="text/csv")


class ComplianceRow(BaseModel):
    site_id: str
    kind: str
    plan: str
    total: int
    on_time: int
    late: int
    missed: int
    pending: int
    on_time_rate: float | None


@router.get("/maintenance/compliance", response_model=list[ComplianceRow],
            responses={404: {"description": "no such site for the caller"}})
def get_compliance(
    user: CurrentUser, session: SessionDep, ctx: CtxDep, site_id: SiteQuery = None,
    since: Since = None, until: Since = None,
) -> list[ComplianceRow]:
    """Preventive visits due in the period: done on time, late, missed, still pending."""
    _check_site(session, user, site_id)
    sites = frozenset({site_id}) if site_id is not None else user.sites
    rows = preventive.compliance(session, sites, ctx.clock.now(), since, until)
    return [
        ComplianceRow(site_id=r.site_id, kind=r.kind, plan=r.plan, total=r.total,
                      on_time=r.on_time, late=r.late, missed=r.missed, pending=r.pending,
                      on_time_rate=r.on_time_rate)
        for r in rows
    ]


@router.get(
    "/maintenance/compliance.csv", response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no such site"}},
)
def get_compliance_csv(
    user: CurrentUser, session: SessionDep, ctx: CtxDep, site_id: SiteQuery = None,
    since: Since = None, until: Since = None,
) -> PlainTextResponse:
    """The compliance report as CSV, one line per site and plan."""
    rows = get_compliance(user, session, ctx, site_id, since, until)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = list(ComplianceRow.model_fields)
    writer.writerow(fields)
    for row in rows:
        writer.writerow(["" if getattr(row, f) is None else getattr(row, f) for f in fields])
    return PlainTextResponse(out.getvalue(), media_type="text/csv")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=500, pattern=r"^https?://")
    site_id: str | None = Field(default=None, min_length=1, max_length=64)


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    site_id: str | None
    active: bool
    cursor: int
    failures: int
    next_attempt_at: float
    last_error: str | None
    delivered: int


class WebhookCreated(WebhookPublic):
    secret: str
    """The signing secret; shown only in this reply."""


def _admin(user: Principal) -> None:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins manage webhooks")


@router.post("/webhooks", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED,
             responses={403: {"description": "admins only"}, 404: {"description": "no site"}})
def create_webhook(body: WebhookCreate, user: CurrentUser, session: SessionDep) -> WebhookCreated:
    """Subscribe ``url`` to work-order changes (of one site, or of all the admin's sites)."""
    _admin(user)
    if body.site_id is None and user.sites is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "give site_id: you do not see every site")
    _check_site(session, user, body.site_id)
    hook = Webhook(url=body.url, site_id=body.site_id, secret=secrets.token_urlsafe(32),
                   active=True, cursor=start_after_latest(session), failures=0,
                   next_attempt_at=0.0, delivered=0)
    session.add(hook)
    session.commit()
    return WebhookCreated.model_validate(hook, from_attributes=True)


def _hooks(session: SessionDep, user: Principal) -> list[Webhook]:
    stmt = select(Webhook).order_by(Webhook.id)
    rows = list(session.scalars(stmt))
    return [h for h in rows if (h.site_id is None and user.sites is None)
            or (h.site_id is not None and user.can_see(h.site_id))]


@router.get("/webhooks", response_model=list[WebhookPublic],
            responses={403: {"description": "admins only"}})
def list_webhooks(user: CurrentUser, session: SessionDep) -> list[WebhookPublic]:
    _admin(user)
    return [WebhookPublic.model_validate(h) for h in _hooks(session, user)]


@router.delete("/webhooks/{hook_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={403: {"description": "admins only"}, 404: {"description": "none"}})
def delete_webhook(
    hook_id: Annotated[int, Path(ge=1, le=2**31 - 1)], user: CurrentUser, session: SessionDep
) -> None:
    _admin(user)
    hook = next((h for h in _hooks(session, user) if h.id == hook_id), None)
    if hook is None:
        raise not_found("webhook")
    hook.active = False
    session.commit()
