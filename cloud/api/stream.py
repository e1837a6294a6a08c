"""``GET /api/v1/stream``: server-sent events, one message per work-order change.

Fed from the ``changes`` table by id, so every worker serves the same stream. A commit that
records a change wakes the streams of every worker at once (:mod:`cloud.change_signal`:
PostgreSQL ``NOTIFY``, or in-process on SQLite); ``stream_poll_interval`` is only the
fallback poll. Clients resume
with the standard ``Last-Event-ID`` header (or ``?after=``); EventSource cannot set headers, so
the access token may also come as ``?access_token=``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from cloud import changes
from cloud.api.deps import CtxDep, CurrentUser
from cloud.context import AppContext

router = APIRouter(prefix="/api/v1", tags=["stream"])
_HEARTBEAT = 15.0


def _read(ctx: AppContext, after: int, sites: frozenset[str] | None) -> list[str]:
    with ctx.db.session() as session:
        return [
            f"id: {c.id}\nevent: {c.topic}\ndata: {json.dumps(changes.as_message(c))}\n\n"
            for c in changes.since(session, after, sites)
        ]


def _latest(ctx: AppContext) -> int:
    with ctx.db.session() as session:
        return changes.latest_id(session)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"}},
)
async def stream(
    request: Request, user: CurrentUser, ctx: CtxDep,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    max_seconds: Annotated[float | None, Query(gt=0, le=86400)] = None,
) -> StreamingResponse:
    """Work-order changes on the caller's sites, from ``after`` (default: from now on).

    ``max_seconds`` ends the stream after that long (for tests and polling clients).
    """
    header = request.headers.get("last-event-id", "")
    cursor = int(header) if header.isdigit() else after
    if cursor is None:
        cursor = await run_in_threadpool(_latest, ctx)
    start = time.monotonic()

    async def generate(cursor: int) -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last_beat = time.monotonic()
        signal = ctx.db.changes
        while not await request.is_disconnected():
            if max_seconds is not None and time.monotonic() - start >= max_seconds:
                return
            ticket = signal.ticket()  # before the read: a commit after it is not missed
            try:
                messages = await run_in_threadpool(_read, ctx, cursor, user.sites)
                for message in messages:
                    cursor = int(message.split("\n", 1)[0][4:])
                    yield message
                if time.monotonic() - last_beat >= _HEARTBEAT:
                    last_beat = time.monotonic()
                    yield ": keep-alive\n\n"
                if messages:
                    continue
                wait = ctx.settings.stream_poll_interval
                if max_seconds is not None:
                    wait = max(0.0, min(wait, max_seconds - (time.monotonic() - start)))
                await signal.wait(ticket, wait)
            finally:
                signal.discard(ticket)  # also when the client leaves mid-stream

    return StreamingResponse(
        generate(cursor), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
