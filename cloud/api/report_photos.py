"""Photos attached to people's problem reports.

A resident or staff member uploads each photo first (``POST /api/v1/reports/photos``) and puts
the returned ``ref`` in the report's ``photos`` list. Photos are kept in the same table as the
gateways' evidence images, under a ``report-<random>.jpg|png`` name, so they are served by the
existing site-scoped ``GET /api/v1/evidence/{site_id}/{name}`` (bearer token or
``?access_token=``). Names are random, so one reporter cannot overwrite another's photo.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from cloud.api.deps import CtxDep, CurrentUser, not_found
from cloud.context import AppContext
from cloud.models import Site
from cloud.telemetry_models import EvidenceImage

router = APIRouter(prefix="/api/v1", tags=["reports"])

MAX_PHOTO_BYTES = 4 * 1024 * 1024
"""Largest photo accepted (4 MiB): a phone photo at normal quality fits."""
PHOTO_PREFIX = "report-"
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
)


class PhotoStored(BaseModel):
    """Where an uploaded photo lives; ``ref`` goes into the report's ``photos`` list."""

    site_id: str
    name: str
    ref: str
    """The URL path serving the photo (same as ``url``); what a report's ``photos`` carries."""
    url: str
    content_type: str
    size: int


def sniff(data: bytes) -> tuple[str, str] | None:
    """(content type, file extension) of a JPEG or PNG by its magic bytes, else ``None``."""
    for magic, content_type, ext in _MAGIC:
        if data.startswith(magic):
            return content_type, ext
    return None


def photo_url(site_id: str, name: str) -> str:
    """The site-scoped path serving a stored report photo."""
    return f"/api/v1/evidence/{site_id}/{name}"


@router.post(
    "/reports/photos", response_model=PhotoStored, status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"required": True, "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}}}}},
    responses={401: {"description": "not signed in"},
               404: {"description": "no such site for the caller"},
               413: {"description": "photo larger than 4 MiB"},
               415: {"description": "neither a JPEG nor a PNG"}},
)
async def post_report_photo(
    request: Request, user: CurrentUser, ctx: CtxDep,
    site_id: Annotated[str, Query(min_length=1, max_length=64)],
) -> PhotoStored:
    """Store one photo (raw JPEG or PNG body) for a report about to be filed on ``site_id``.

    Any signed-in user who may file a report on the site (any role that sees it) may upload.
    The type is decided by the magic bytes, never by the declared content type.
    """
    if not user.can_see(site_id):
        raise not_found("site")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_PHOTO_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "photo larger than 4 MiB")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_PHOTO_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                "photo larger than 4 MiB")
    kind = sniff(bytes(body[:8]))
    if kind is None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "the photo must be a JPEG or a PNG")
    content_type, ext = kind
    name = f"{PHOTO_PREFIX}{secrets.token_hex(12)}.{ext}"
    stored = await run_in_threadpool(_store, ctx, site_id, name, content_type, bytes(body))
    if not stored:
        raise not_found("site")
    url = photo_url(site_id, name)
    return PhotoStored(site_id=site_id, name=name, ref=url, url=url,
                       content_type=content_type, size=len(body))


def _store(ctx: AppContext, site_id: str, name: str, content_type: str, data: bytes) -> bool:
    """Insert the photo; ``False`` when the site does not exist."""
    with ctx.db.session() as session:
        if session.get(Site, site_id) is None:
            return False
        session.add(EvidenceImage(site_id=site_id, name=name, content_type=content_type,
                                  data=data, size=len(data), received_at=ctx.clock.now()))
        session.commit()
    return True
