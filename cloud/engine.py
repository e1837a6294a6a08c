"""The background engine: SLA checks and escalation, preventive plans, webhook delivery.

Every worker may run it; the database's constraints, version checks and leases make each step
happen once. ``run_once`` and ``deliver_once`` are plain functions of the clock, so tests drive
them with a manual clock. Webhooks run in a task of their own: a slow subscriber never delays
an escalation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool

from cloud import preventive
from cloud.context import AppContext
from cloud.photo_cleanup import remove_unused_photos
from cloud.sla import check_slas
from cloud.webhooks import Transport, WebhookDelivery, http_transport

log = logging.getLogger(__name__)

PHOTO_CLEANUP_INTERVAL_S = 3600.0
WEBHOOK_SPACING_S = 0.2
"""Webhook passes woken by commits come at most this often (each pass costs a few queries
per subscriber, and a busy site commits many changes a second)."""


@dataclass
class EngineReport:
    escalations: int = 0
    preventive_orders: int = 0
    webhook_changes: int = 0
    photos_removed: int = 0
    errors: int = 0
    passes: int = 0
    details: dict[str, int] = field(default_factory=dict)


class Engine:
    """One pass of every periodic duty; ``run_forever`` repeats it on an interval."""

    def __init__(self, ctx: AppContext, transport: Transport = http_transport) -> None:
        self._ctx = ctx
        self.report = EngineReport()
        s = ctx.settings
        self.webhooks = WebhookDelivery(
            ctx.db, timeout=s.webhook_timeout, retry_initial=s.webhook_retry_initial,
            retry_max=s.webhook_retry_max, transport=transport,
        )
        self._photos_checked_at = float("-inf")

    def run_once(self) -> EngineReport:
        ctx = self._ctx
        now = ctx.clock.now()
        with ctx.db.session() as session, session.begin():
            steps = check_slas(
                session, now, ctx.settings.escalation_roles, ctx.settings.escalation_step
            )
        with ctx.db.session() as session, session.begin():
            opened = preventive.generate(session, ctx.policies, now)
        if now - self._photos_checked_at >= PHOTO_CLEANUP_INTERVAL_S:
            with ctx.db.session() as session, session.begin():
                self.report.photos_removed += remove_unused_photos(session, now)
            self._photos_checked_at = now
        self.report.escalations += steps
        self.report.preventive_orders += opened
        self.report.passes += 1
        return self.report

    def deliver_once(self) -> int:
        """One webhook pass at the clock's now; returns changes delivered."""
        n = self.webhooks.run_once(self._ctx.clock.now())
        self.report.webhook_changes += n
        return n

    async def run_forever(self) -> None:
        """Repeat :meth:`run_once`; a failing pass is counted and logged, never fatal."""
        await self._repeat(self.run_once, "engine", self._ctx.settings.engine_interval)

    async def deliver_forever(self) -> None:
        """Repeat :meth:`deliver_once`: as soon as a change is committed (the live stream's
        signal, :mod:`cloud.change_signal`), at most every :data:`WEBHOOK_SPACING_S`, and
        every ``webhook_poll_interval`` regardless (retries after a backoff, and changes of
        other workers when no listener runs)."""
        signal = self._ctx.db.changes
        poll = self._ctx.settings.webhook_poll_interval
        while True:
            ticket = signal.ticket()  # before the pass: a commit during it gets a pass
            started = time.monotonic()
            try:
                await run_in_threadpool(self.deliver_once)
            except Exception:  # the boundary of a long-running task: count, log, keep going
                self.report.errors += 1
                log.exception("webhook pass failed (%d failures so far)", self.report.errors)
            try:
                spacing = WEBHOOK_SPACING_S - (time.monotonic() - started)
                if spacing > 0:
                    await asyncio.sleep(spacing)
                await signal.wait(ticket, max(0.0, poll - (time.monotonic() - started)))
            finally:
                signal.discard(ticket)

    async def _repeat(self, step: Callable[[], object], name: str, interval: float) -> None:
        while True:
            try:
                await run_in_threadpool(step)
            except Exception:  # the boundary of a long-running task: count, log, keep going
                self.report.errors += 1
                log.exception("%s pass failed (%d failures so far)", name, self.report.errors)
            await asyncio.sleep(interval)
