"""Residents' photos that no report ever used are removed after a grace period.

A photo is uploaded first and referenced by the report filed after it; a photo whose report
was never filed (the resident gave up, the upload was a test) would otherwise stay in the
database for ever. The engine calls :func:`remove_unused_photos` about once an hour.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.api.report_photos import PHOTO_PREFIX
from cloud.models import WorkOrder
from cloud.telemetry_models import EvidenceImage

GRACE_S = 24 * 3600.0
"""How long an unused photo is kept: a report filed within a day keeps its photos."""


def remove_unused_photos(
    session: Session, now: float, *, grace_s: float = GRACE_S, limit: int = 1000
) -> int:
    """Delete up to ``limit`` report photos older than ``grace_s`` that no order references."""
    candidates = session.execute(
        select(EvidenceImage.id, EvidenceImage.site_id, EvidenceImage.name,
               EvidenceImage.received_at)
        .where(EvidenceImage.name.like(f"{PHOTO_PREFIX}%"),
               EvidenceImage.received_at < now - grace_s)
        .order_by(EvidenceImage.received_at)
        .limit(limit)
    ).all()
    if not candidates:
        return 0
    sites = {site for _, site, _, _ in candidates}
    since = min(received for _, _, _, received in candidates)
    used: set[str] = set()
    for (photos,) in session.execute(
        select(WorkOrder.photos).where(
            WorkOrder.site_id.in_(sites), WorkOrder.opened_at >= since - 3600.0
        )
    ):
        used.update(p for p in photos or () if isinstance(p, str))
    unused = [
        row_id for row_id, site, name, _ in candidates
        if f"/api/v1/evidence/{site}/{name}" not in used
    ]
    if unused:
        session.execute(delete(EvidenceImage).where(EvidenceImage.id.in_(unused)))
    return len(unused)
