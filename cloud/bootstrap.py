"""Provisioning from Python and from the CLI: sites, devices, users, gateway tokens.

Every function opens the database of ``settings``, migrates it, does its work in one
transaction and closes it again, so they are safe to call before the service runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cloud.db import Database
from cloud.models import Device, GatewayToken, Site, User, UserSite
from cloud.security import gateway_token_hash, hash_password, new_gateway_token
from cloud.settings import Settings
from device_profiles.site import DeviceConfig

ROLES: tuple[str, ...] = ("admin", "dispatcher", "technician", "security", "viewer")
ALL_SITES = "*"


class ProvisioningError(ValueError):
    """Bad input to a provisioning call (unknown role, unknown site...)."""


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    db = Database(settings)
    try:
        db.migrate()
        with db.session() as session, session.begin():
            yield session
    finally:
        db.dispose()


def provision_site(
    settings: Settings, site_id: str, name: str, devices: list[DeviceConfig]
) -> None:
    """Create or update the site and its devices' ledger rows (idempotent)."""
    now = time.time()
    with _session(settings) as session:
        upsert_site(session, site_id, name, now)
        for dev in devices:
            upsert_device(session, site_id, dev, now)


def upsert_site(session: Session, site_id: str, name: str, now: float) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        site = Site(id=site_id, name=name or site_id, created_at=now)
        session.add(site)
    elif name:
        site.name = name
    session.flush()
    return site


def upsert_device(session: Session, site_id: str, dev: DeviceConfig, now: float) -> Device:
    row = session.scalars(
        select(Device).where(Device.site_id == site_id, Device.device_id == dev.id)
    ).first()
    if row is None:
        row = Device(site_id=site_id, device_id=dev.id, kind=dev.kind, created_at=now)
        session.add(row)
    row.kind = dev.kind
    row.building = dev.building
    row.unit = dev.unit
    row.floor = dev.floor
    for attr in ("vendor", "model", "serial", "install_date"):
        value = getattr(dev, attr)
        if value is not None:
            setattr(row, attr, value)
    warranty = dev.params.get("warranty_end")
    if isinstance(warranty, str):
        row.warranty_end = warranty
    session.flush()
    return row


def issue_gateway_token(
    settings: Settings, site_id: str, ttl: float | None = None
) -> str:
    """A new gateway token for ``site_id`` (created if unknown); only its hash is stored.

    Older tokens stay valid until revoked, so a gateway can be moved to the new token first.
    """
    now = time.time()
    token = new_gateway_token()
    with _session(settings) as session:
        upsert_site(session, site_id, "", now)
        session.add(
            GatewayToken(
                site_id=site_id, token_hash=gateway_token_hash(token), prefix=token[:12],
                created_at=now, expires_at=None if ttl is None else now + ttl,
            )
        )
    return token


def revoke_gateway_tokens(
    settings: Settings, site_id: str, prefix: str | None = None, keep: str | None = None
) -> int:
    """Revoke the site's tokens (those starting with ``prefix`` if given, except ``keep``).

    Returns how many were revoked. Revoked tokens answer 401 from the next request on.
    """
    now = time.time()
    with _session(settings) as session:
        stmt = (
            update(GatewayToken)
            .where(GatewayToken.site_id == site_id, GatewayToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        if prefix:
            stmt = stmt.where(GatewayToken.prefix.startswith(prefix[:12]))
        if keep:
            stmt = stmt.where(GatewayToken.token_hash != gateway_token_hash(keep))
        return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def rotate_gateway_token(settings: Settings, site_id: str) -> str:
    """Issue a new token and revoke every other token of the site."""
    token = issue_gateway_token(settings, site_id)
    revoke_gateway_tokens(settings, site_id, keep=token)
    return token


def create_user(
    settings: Settings, username: str, password: str, role: str, sites: list[str],
    team: str | None = None, on_shift: bool = False,
) -> None:
    """Create or update a user with ``role`` on ``sites`` (``*``: every site). Idempotent."""
    if role not in ROLES:
        raise ProvisioningError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if not username or len(username) > 64:
        raise ProvisioningError("a username is 1 to 64 characters")
    if len(password) < 8:
        raise ProvisioningError("a password has at least 8 characters")
    now = time.time()
    with _session(settings) as session:
        user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            user = User(username=username, created_at=now, password_hash="", role=role)
            session.add(user)
        user.password_hash = hash_password(password)
        user.role = role
        user.active = True
        user.team = team
        user.on_shift = on_shift
        session.flush()
        session.execute(delete(UserSite).where(UserSite.user_id == user.id))
        for site in sorted(set(sites)):
            session.add(UserSite(user_id=user.id, site_id=site))


def set_user_active(settings: Settings, username: str, active: bool) -> None:
    with _session(settings) as session:
        user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            raise ProvisioningError(f"no user {username!r}")
        user.active = active
