"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from cloud import dashboard, metrics
from cloud.api import (
    auth,
    devices,
    events,
    people,
    report_photos,
    reporting,
    sites,
    stream,
    work_orders,
)
from cloud.api.guards import RejectNul
from cloud.clock import Clock, SystemClock
from cloud.context import AppContext
from cloud.db import Database
from cloud.engine import Engine
from cloud.intake import Intake
from cloud.policies import PolicyBook
from cloud.settings import Settings
from cloud.webhooks import Transport, http_transport
from gatehouse import __version__


def create_app(
    settings: Settings, clock: Clock | None = None, webhook_transport: Transport | None = None
) -> FastAPI:
    """The cloud app on ``settings.database_url``; migrates the database before returning.

    ``clock`` (default: the wall clock) is what intake, tokens and SLAs read; tests pass a
    manual one. The background engine runs in the app's lifespan when ``settings.run_engine``;
    ``app.state.engine`` (:class:`cloud.engine.Engine`) can also be driven pass by pass.
    ``webhook_transport`` replaces the HTTP client that posts webhooks (tests).
    """
    clock = clock or SystemClock()
    db = Database(settings)
    db.migrate()
    policies = PolicyBook.load(settings.profiles_dir)
    ctx = AppContext(
        settings=settings, db=db, clock=clock, policies=policies,
        intake=Intake(db, policies, clock, settings.rework_window),
    )
    engine = Engine(ctx, webhook_transport or http_transport)
    listener = db.change_listener() if settings.stream_listen else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if listener is not None:
            listener.start()
        tasks = (
            [asyncio.create_task(engine.run_forever()),
             asyncio.create_task(engine.deliver_forever())]
            if settings.run_engine else []
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if listener is not None:
                listener.stop()
            db.dispose()

    app = FastAPI(
        title="gatehouse cloud", version=__version__, lifespan=lifespan,
        description="Event intake, work orders with SLAs, the device ledger, users and sites.",
    )
    app.add_middleware(RejectNul)
    app.state.ctx = ctx
    app.state.engine = engine
    for module in (events, auth, work_orders, report_photos, devices, sites, stream, reporting,
                   people):
        app.include_router(module.router)
    dashboard.install(app)
    metrics.install(app, ctx)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        c = ctx.intake.counters
        return {
            "status": "ok", "database": db.dialect,
            "intake": {"batches": c.batches, "accepted": c.accepted,
                       "duplicates": c.duplicates, "rejected": c.rejected,
                       "retries": c.retries},
            "engine": {"passes": engine.report.passes, "errors": engine.report.errors,
                       "escalations": engine.report.escalations,
                       "preventive_orders": engine.report.preventive_orders,
                       "webhook_changes": engine.report.webhook_changes},
            "stream": {"listening": listener is not None and listener.connected,
                       "wakeups": db.changes.notified},
        }

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from ``GATEHOUSE_*``."""
    os.environ.setdefault("GATEHOUSE_RUN_ENGINE", "true")
    return create_app(Settings())
