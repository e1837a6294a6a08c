"""``POST /api/v1/events``: the gateways' intake."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from cloud.api.deps import CtxDep, GatewaySite
from device_profiles.messages import EventBatch, EventBatchResult

router = APIRouter(prefix="/api/v1", tags=["events"])


@router.post(
    "/events", response_model=EventBatchResult,
    responses={401: {"description": "missing, invalid or revoked gateway token"}},
)
async def post_events(batch: EventBatch, site_id: GatewaySite, ctx: CtxDep) -> EventBatchResult:
    """Store a batch idempotently: resent events come back as ``duplicates``.

    ``rejected`` events can never be accepted (another site's, unknown type); the gateway
    drops them too. Everything else is retried by the gateway until accepted.
    """
    return await run_in_threadpool(ctx.intake.ingest, site_id, batch)
