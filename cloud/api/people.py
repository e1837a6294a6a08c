"""Users, shifts and gateway tokens through the API (the CLI does the same from a shell).

Admins manage users and tokens of their own sites only; a site they do not see answers 404.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from cloud.api.deps import ALL_SITES, CtxDep, CurrentUser, Principal, SessionDep, not_found
from cloud.bootstrap import ROLES
from cloud.models import GatewayToken, Site, User, UserSite
from cloud.security import gateway_token_hash, hash_password, new_gateway_token

router = APIRouter(prefix="/api/v1", tags=["people"])
SiteId = Annotated[str, Path(min_length=1, max_length=64)]
Responses = dict[int | str, dict[str, Any]]
_ADMIN: Responses = {403: {"description": "admins only"}, 404: {"description": "no such site"}}


class UserPublic(BaseModel):
    username: str
    role: str
    team: str | None
    on_shift: bool
    active: bool
    sites: list[str]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: str = Field(pattern="^(" + "|".join(ROLES) + ")$")
    sites: list[str] = Field(min_length=1, max_length=100)
    team: str | None = Field(default=None, max_length=64)
    on_shift: bool = False


class ShiftUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_shift: bool


class ActiveUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool


class GatewayTokenCreated(BaseModel):
    site_id: str
    token: str
    """Shown only in this reply; the cloud keeps only its hash."""
    prefix: str


class GatewayTokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    site_id: str
    prefix: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


def _require_admin(user: Principal) -> None:
    if user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")


def _admin_site(session: SessionDep, user: Principal, site_id: str) -> None:
    _require_admin(user)
    if not user.can_see(site_id) or session.get(Site, site_id) is None:
        raise not_found("site")


@router.get("/users", response_model=list[UserPublic],
            responses={403: {"description": "dispatchers and admins only"}})
def list_users(user: CurrentUser, session: SessionDep) -> list[UserPublic]:
    """Users who share at least one site with the caller (for assignment and shifts)."""
    if user.role not in ("admin", "dispatcher"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "dispatchers and admins only")
    grants: dict[int, list[str]] = {}
    for row in session.execute(select(UserSite.user_id, UserSite.site_id)):
        grants.setdefault(int(row[0]), []).append(str(row[1]))
    out = []
    for u in session.scalars(select(User).order_by(User.username)):
        sites = sorted(grants.get(u.id, []))
        if user.sites is None:
            visible = sites
        else:
            visible = [s for s in sites if s == ALL_SITES or s in user.sites]
        if visible:
            out.append(UserPublic(username=u.username, role=u.role, team=u.team,
                                  on_shift=u.on_shift, active=u.active, sites=visible))
    return out


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED,
             responses={**_ADMIN, 409: {"description": "the username is taken"}})
async def create_user(body: UserCreate, user: CurrentUser, ctx: CtxDep) -> UserPublic:
    """Create a user on some of the admin's own sites."""
    _require_admin(user)
    for site in body.sites:
        if site == ALL_SITES and user.sites is not None:
            raise not_found("site")
    password_hash = await run_in_threadpool(hash_password, body.password)
    with ctx.db.session() as session, session.begin():
        for site in body.sites:
            if site != ALL_SITES:
                _admin_site(session, user, site)
        if session.scalars(select(User).where(User.username == body.username)).first():
            raise HTTPException(status.HTTP_409_CONFLICT, "username taken")
        row = User(username=body.username, password_hash=password_hash, role=body.role,
                   active=True, team=body.team, on_shift=body.on_shift, created_at=time.time())
        session.add(row)
        session.flush()
        for site in sorted(set(body.sites)):
            session.add(UserSite(user_id=row.id, site_id=site))
    return UserPublic(username=body.username, role=body.role, team=body.team,
                      on_shift=body.on_shift, active=True, sites=sorted(set(body.sites)))


@router.post("/users/{username}/active", response_model=UserPublic,
             responses={403: {"description": "admins only"}, 404: {"description": "none"}})
def set_user_active(
    username: Annotated[str, Path(min_length=1, max_length=64)], body: ActiveUpdate,
    user: CurrentUser, session: SessionDep,
) -> UserPublic:
    """Disable (or re-enable) a user of the admin's sites; a disabled user's tokens stop
    working at once."""
    _require_admin(user)
    row = session.scalars(select(User).where(User.username == username)).first()
    sites = [] if row is None else sorted(
        session.scalars(select(UserSite.site_id).where(UserSite.user_id == row.id)))
    if row is None or row.id == user.user_id or (
        user.sites is not None and not sites) or (
        user.sites is not None and any(s == ALL_SITES or s not in user.sites for s in sites)
    ):
        raise not_found("user")
    row.active = body.active
    session.commit()
    return UserPublic(username=row.username, role=row.role, team=row.team,
                      on_shift=row.on_shift, active=row.active, sites=sites)


@router.post("/users/me/shift", response_model=UserPublic)
def set_my_shift(body: ShiftUpdate, user: CurrentUser, session: SessionDep) -> UserPublic:
    """Start or end one's shift: dispatch assigns only to people on shift."""
    row = session.get(User, user.user_id)
    if row is None:
        raise not_found("user")
    row.on_shift = body.on_shift
    session.commit()
    sites = sorted(session.scalars(select(UserSite.site_id).where(UserSite.user_id == row.id)))
    return UserPublic(username=row.username, role=row.role, team=row.team,
                      on_shift=row.on_shift, active=row.active, sites=sites)


@router.post("/sites/{site_id}/gateway-tokens", response_model=GatewayTokenCreated,
             status_code=status.HTTP_201_CREATED, responses=_ADMIN)
def create_gateway_token(
    site_id: SiteId, user: CurrentUser, session: SessionDep, ctx: CtxDep, rotate: bool = False
) -> GatewayTokenCreated:
    """A new gateway token for the site; ``rotate`` revokes the site's other tokens."""
    _admin_site(session, user, site_id)
    token = new_gateway_token()
    now = ctx.clock.now()
    if rotate:
        session.execute(update(GatewayToken).where(
            GatewayToken.site_id == site_id, GatewayToken.revoked_at.is_(None)
        ).values(revoked_at=now))
    session.add(GatewayToken(site_id=site_id, token_hash=gateway_token_hash(token),
                             prefix=token[:12], created_at=now))
    session.commit()
    return GatewayTokenCreated(site_id=site_id, token=token, prefix=token[:12])


@router.get("/sites/{site_id}/gateway-tokens", response_model=list[GatewayTokenPublic],
            responses=_ADMIN)
def list_gateway_tokens(
    site_id: SiteId, user: CurrentUser, session: SessionDep
) -> list[GatewayTokenPublic]:
    _admin_site(session, user, site_id)
    rows = session.scalars(select(GatewayToken).where(GatewayToken.site_id == site_id)
                           .order_by(GatewayToken.id))
    return [GatewayTokenPublic.model_validate(r) for r in rows]


@router.delete("/sites/{site_id}/gateway-tokens/{token_id}",
               status_code=status.HTTP_204_NO_CONTENT, responses=_ADMIN)
def revoke_gateway_token(
    site_id: SiteId, token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], user: CurrentUser,
    session: SessionDep, ctx: CtxDep,
) -> None:
    """Revoke one token: the gateway using it gets 401 from its next request."""
    _admin_site(session, user, site_id)
    done = session.execute(update(GatewayToken).where(
        GatewayToken.id == token_id, GatewayToken.site_id == site_id,
        GatewayToken.revoked_at.is_(None),
    ).values(revoked_at=ctx.clock.now()))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise not_found("gateway token")
    session.commit()



