"""The background engine: SLA checks and escalation (and later plans and webhooks).

Every worker may run it; the database's constraints and version checks make each step happen
once. ``run_once`` is a plain function of the clock, so tests drive it with a manual clock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool

from cloud.context import AppContext
from cloud.sla import check_slas

log = logging.getLogger(__name__)


@dataclass
class EngineReport:
    escalations: int = 0
    errors: int = 0
    passes: int = 0
    details: dict[str, int] = field(default_factory=dict)


class Engine:
    """One pass of every periodic duty; ``run_forever`` repeats it on an interval."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self.report = EngineReport()

    def run_once(self) -> EngineReport:
        ctx = self._ctx
        now = ctx.clock.now()
        with ctx.db.session() as session, session.begin():
            steps = check_slas(
                session, now, ctx.settings.escalation_roles, ctx.settings.escalation_step
            )
        self.report.escalations += steps
        self.report.passes += 1
        return self.report

    async def run_forever(self) -> None:
        """Repeat :meth:`run_once`; a failing pass is counted and logged, never fatal."""
        while True:
            try:
                await run_in_threadpool(self.run_once)
            except Exception:  # the boundary of a long-running task: count, log, keep going
                self.report.errors += 1
                log.exception("engine pass failed (%d failures so far)", self.report.errors)
            await asyncio.sleep(self._ctx.settings.engine_interval)
