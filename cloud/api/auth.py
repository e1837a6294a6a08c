"""``POST /api/v1/auth/login`` (JSON or form) and ``GET /api/v1/auth/me``."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import CtxDep, CurrentUser, SessionDep
from cloud.api.schemas import LoginRequest, Me, TokenReply
from cloud.models import User
from cloud.security import issue_access_token, verify_password

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
_CREDENTIALS = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string", "minLength": 1, "maxLength": 64},
        "password": {"type": "string", "minLength": 1, "maxLength": 256},
    },
}


async def _credentials(request: Request) -> LoginRequest:
    body = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            data: object = {k: v[0] for k, v in form.items() if k in ("username", "password")}
        else:
            data = json.loads(body or b"null")
        return LoginRequest.model_validate(data)
    except (ValueError, ValidationError, UnicodeDecodeError) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "username and password are required"
        ) from exc


@router.post(
    "/login", response_model=TokenReply,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _CREDENTIALS},
        "application/x-www-form-urlencoded": {"schema": _CREDENTIALS},
    }}},
    responses={401: {"description": "wrong username or password"}},
)
async def login(request: Request, ctx: CtxDep, session: SessionDep) -> TokenReply:
    """Exchange a username and password for an access token that expires."""
    creds = await _credentials(request)
    user_id = await run_in_threadpool(_check, session, creds)
    if user_id is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expires = ctx.clock.now() + ctx.settings.access_token_ttl
    return TokenReply(
        access_token=issue_access_token(ctx.settings.signing_key, user_id, expires),
        expires_at=expires,
    )


def _check(session: Session, creds: LoginRequest) -> int | None:
    user = session.scalars(select(User).where(User.username == creds.username)).first()
    if user is None or not user.active or not verify_password(creds.password, user.password_hash):
        return None
    return user.id


@router.get("/me", response_model=Me)
def me(user: CurrentUser) -> Me:
    return Me(
        username=user.username, role=user.role,
        sites=None if user.sites is None else sorted(user.sites),
    )
