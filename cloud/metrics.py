"""``GET /metrics``: Prometheus text for Grafana's work-order panels, and overload answers.

The gauges are computed from the database at scrape time, so every worker answers the same
and nothing lives in one worker's memory. The intake counters are this worker's own (each
worker is scraped as its own target).
"""

from __future__ import annotations

import hmac
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cloud.context import AppContext
from cloud.models import ACTIVE_STATES, Site, WorkOrder

log = logging.getLogger(__name__)

PRIORITIES = ("P1", "P2", "P3", "P4")
RETRY_AFTER_S = 2


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(ctx: AppContext) -> str:
    """The exposition text: open and breached orders per site and priority, intake counters."""
    with ctx.db.session() as session:
        sites = [row[0] for row in session.execute(select(Site.id))]
        open_rows = session.execute(
            select(WorkOrder.site_id, WorkOrder.priority, func.count())
            .where(WorkOrder.state.in_(ACTIVE_STATES))
            .group_by(WorkOrder.site_id, WorkOrder.priority)
        ).all()
        breached_rows = session.execute(
            select(WorkOrder.site_id, WorkOrder.priority, func.count())
            .where(
                WorkOrder.state.in_(ACTIVE_STATES),
                (WorkOrder.response_breached.is_(True)) | (WorkOrder.resolve_breached.is_(True)),
            )
            .group_by(WorkOrder.site_id, WorkOrder.priority)
        ).all()
    open_counts = {(s, p): int(n) for s, p, n in open_rows}
    breached = {(s, p): int(n) for s, p, n in breached_rows}
    lines = [
        "# HELP gatehouse_work_orders_open Work orders not closed or cancelled.",
        "# TYPE gatehouse_work_orders_open gauge",
    ]
    for site in sorted(sites):
        for prio in PRIORITIES:
            lines.append(
                f'gatehouse_work_orders_open{{site="{_escape(site)}",priority="{prio}"}} '
                f"{open_counts.get((site, prio), 0)}"
            )
    lines += [
        "# HELP gatehouse_work_orders_breached Active work orders past a response or resolve due.",
        "# TYPE gatehouse_work_orders_breached gauge",
    ]
    for site in sorted(sites):
        for prio in PRIORITIES:
            lines.append(
                f'gatehouse_work_orders_breached{{site="{_escape(site)}",priority="{prio}"}} '
                f"{breached.get((site, prio), 0)}"
            )
    c = ctx.intake.counters
    for name, value in (
        ("batches", c.batches), ("accepted", c.accepted), ("duplicates", c.duplicates),
        ("rejected", c.rejected), ("retries", c.retries),
    ):
        lines.append(f"# TYPE gatehouse_intake_{name}_total counter")
        lines.append(f"gatehouse_intake_{name}_total {value}")
    return "\n".join(lines) + "\n"


def install(app: FastAPI, ctx: AppContext) -> None:
    """Mount ``/metrics`` and answer database overload with 503 + Retry-After, not 500."""

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        token = ctx.settings.metrics_token
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return PlainTextResponse("metrics token required\n", status_code=401)
        return PlainTextResponse(
            render_metrics(ctx), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(request: Request, exc: PoolTimeout) -> Response:
        log.warning("database pool exhausted on %s %s: refusing with 503", request.method,
                    request.url.path)
        return _busy("the database is busy (no free connection): retry shortly")

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> Response:
        text = str(exc.orig) if exc.orig is not None else str(exc)
        if "database is locked" in text or "could not connect" in text or "timeout" in text:
            log.warning("database unavailable on %s %s: %s", request.method,
                        request.url.path, text.splitlines()[0][:200])
            return _busy("the database is unavailable or busy: retry shortly")
        log.error("database error on %s %s: %s", request.method, request.url.path,
                  text.splitlines()[0][:200])
        return JSONResponse({"detail": "internal database error"}, status_code=500)


def _busy(detail: str) -> Response:
    return JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )
