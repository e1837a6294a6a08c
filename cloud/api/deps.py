"""Dependencies shared by the routers: the context, a session, the caller (user or gateway)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.lifecycle import Actor
from cloud.models import GatewayToken, User, UserSite
from cloud.security import TokenError, gateway_token_hash, verify_access_token

ALL_SITES = "*"


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    with ctx.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@dataclass(frozen=True)
class Principal:
    """A signed-in user and the sites they may see (``None``: every site)."""

    user_id: int
    username: str
    role: str
    sites: frozenset[str] | None

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.role)

    def can_see(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites

    def scope(self, stmt: Any, column: Any) -> Any:
        """``stmt`` restricted to the caller's sites."""
        if self.sites is None:
            return stmt
        return stmt.where(column.in_(sorted(self.sites)))


def current_user(request: Request, ctx: CtxDep) -> Principal:
    """The user of the bearer token (or ``access_token`` query, for EventSource); else 401.

    Reads in a short transaction of its own, so that no lock outlives the check (SQLite).
    """
    token = bearer(request) or request.query_params.get("access_token")
    if not token:
        raise _unauthorized("not signed in")
    try:
        claims = verify_access_token(ctx.settings.signing_key, token, ctx.clock.now())
    except TokenError as exc:
        raise _unauthorized(str(exc)) from exc
    with ctx.db.session() as session:
        user = session.get(User, claims.user_id)
        if user is None or not user.active:
            raise _unauthorized("user disabled")
        sites = set(
            session.scalars(select(UserSite.site_id).where(UserSite.user_id == user.id))
        )
    return Principal(
        user.id, user.username, user.role, None if ALL_SITES in sites else frozenset(sites)
    )


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_roles(*roles: str) -> Any:
    """A dependency refusing (403) callers whose role is not in ``roles``."""

    def check(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {user.role} may not do this")
        return user

    return Depends(check)


def gateway_site(request: Request, ctx: CtxDep) -> str:
    """The site of the gateway token; 401 for a missing, unknown, expired or revoked one."""
    token = bearer(request)
    if not token:
        raise _unauthorized("gateway token missing")
    now = ctx.clock.now()
    with ctx.db.session() as session:
        site = session.scalar(
            select(GatewayToken.site_id).where(
                GatewayToken.token_hash == gateway_token_hash(token),
                GatewayToken.revoked_at.is_(None),
                or_(GatewayToken.expires_at.is_(None), GatewayToken.expires_at > now),
            )
        )
    if site is None:
        raise _unauthorized("invalid or revoked gateway token")
    return str(site)


GatewaySite = Annotated[str, Depends(gateway_site)]


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
