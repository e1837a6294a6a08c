"""The cloud's settings: one class, read from arguments and ``GATEHOUSE_*`` environment variables.

Keyword arguments win over the environment, the environment over the defaults. A missing or
well-known secret is refused unless ``dev_mode`` is on, because the secret signs every user
token and every webhook: a guessable one would let anybody read every site.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device_profiles.durations import Duration

ENV_PREFIX = "GATEHOUSE_"
DEV_SECRET = "gatehouse-dev-secret-not-for-production"
_WEAK_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "password", DEV_SECRET})


class SettingsError(ValueError):
    """The settings are unusable (for example a default secret outside dev mode)."""


class Settings(BaseModel):
    """Everything the cloud service needs to run; environment variables ``GATEHOUSE_<NAME>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///./var/cloud.db"
    """SQLAlchemy URL; ``postgresql+psycopg://user@host/db`` selects PostgreSQL."""
    secret_key: str = ""
    """Signs user tokens and webhooks. Required (and not a well-known value) unless dev_mode."""
    dev_mode: bool = False
    profiles_dir: str | None = None
    """Folder of device profiles; default: the profiles shipped with gatehouse."""
    access_token_ttl: Duration = 8 * 3600.0
    """Lifetime of a user's access token, seconds."""
    rework_window: Duration = 7 * 86400.0
    """The same fault within this time of closing reopens the closed order as rework."""
    escalation_roles: tuple[str, ...] = Field(
        default=("dispatcher", "supervisor", "manager"), min_length=1
    )
    """Who is alerted at each step of an SLA breach, in order (env: comma-separated)."""
    escalation_step: Duration = 3600.0
    """Time after a breach (and between later steps) before escalating one step further."""
    engine_interval: Duration = 15.0
    """Seconds between passes of the background engine (SLA checks, plans, webhooks)."""
    stream_poll_interval: Duration = 0.5
    """How often the server-sent event stream polls the change log when nothing wakes it (a
    commit that records a change wakes it at once, see ``stream_listen``)."""
    stream_listen: bool = True
    """On PostgreSQL, each worker listens (``LISTEN gatehouse_changes``, one connection of its
    own) for changes other workers commit, so its streams see them at once. Turn off behind a
    pooler that cannot hold a LISTEN (PgBouncer in transaction mode): streams then see other
    workers' changes at the next poll."""
    webhook_poll_interval: Duration = 1.0
    """Seconds between webhook passes when no commit wakes them (a committed change wakes
    them at once, at most every 0.2 s)."""
    webhook_timeout: Duration = 5.0
    webhook_retry_initial: Duration = 2.0
    webhook_retry_max: Duration = 600.0
    run_engine: bool = True
    """Run the background engine in this process (the app's lifespan starts it)."""
    pool_size: int = Field(default=10, ge=1, le=200)
    pool_timeout: Duration = 5.0
    """Seconds a request waits for a database connection before it is refused with 503 and
    ``Retry-After`` (gateways back off and resend; nothing is lost)."""
    metrics_token: str | None = None
    """Bearer token ``/metrics`` requires; ``None``: open (bind the service to a private
    network, as Prometheus scraping usually assumes)."""

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name in cls.model_fields:
            value = os.environ.get(ENV_PREFIX + name.upper())
            if name not in merged and value is not None:
                merged[name] = value
        roles = merged.get("escalation_roles")
        if isinstance(roles, str):
            merged["escalation_roles"] = tuple(r.strip() for r in roles.split(",") if r.strip())
        return merged

    @model_validator(mode="after")
    def _secret(self) -> Settings:
        if not self.dev_mode and self.secret_key.strip() in _WEAK_SECRETS:
            raise SettingsError(
                "secret_key is empty or a well-known default: set GATEHOUSE_SECRET_KEY to a "
                "long random value (for example `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`), or use dev_mode for local experiments"
            )
        if not self.dev_mode and len(self.secret_key) < 16:
            raise SettingsError("secret_key must be at least 16 characters outside dev_mode")
        return self

    @property
    def signing_key(self) -> bytes:
        """The key that signs tokens; a fixed development key when dev_mode has no secret."""
        return (self.secret_key or DEV_SECRET).encode()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL and in-memory databases."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split("///", 1)[-1]
        if not path or path == ":memory:":
            return None
        return Path(path)
