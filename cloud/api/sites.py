"""``GET /api/v1/sites``: the sites the caller may see."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from cloud.api.deps import CurrentUser, SessionDep
from cloud.api.schemas import SitePublic
from cloud.models import Site

router = APIRouter(prefix="/api/v1", tags=["sites"])


@router.get("/sites", response_model=list[SitePublic])
def list_sites(user: CurrentUser, session: SessionDep) -> list[SitePublic]:
    stmt = user.scope(select(Site), Site.id).order_by(Site.id)
    return [SitePublic.model_validate(s) for s in session.scalars(stmt)]
