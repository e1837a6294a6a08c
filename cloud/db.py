"""Engine, sessions and migrations for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode and every transaction starts with ``BEGIN IMMEDIATE``: one writer at a
time, waiting (busy timeout) instead of failing half-way with "database is locked".
PostgreSQL runs at READ COMMITTED; invariants are held by constraints, not by locks in memory.
Migrations run under a PostgreSQL advisory lock so that several workers starting together
migrate once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from cloud import change_signal
from cloud.change_signal import ChangeListener, ChangeSignal
from cloud.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 7_220_431


def make_engine(settings: Settings) -> Engine:
    """An engine for ``settings.database_url`` with the pragmas and pool this service needs."""
    url = settings.database_url
    if settings.is_sqlite:
        path = settings.sqlite_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, future=True
        )
        _sqlite_pragmas(engine)
        return engine
    return create_engine(
        url, pool_size=settings.pool_size, max_overflow=settings.pool_size,
        pool_timeout=settings.pool_timeout, pool_pre_ping=True, future=True,
    )


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config(str(Path(__file__).resolve().parent / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is already there)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
        try:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()


class Database:
    """The engine and session factory of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, future=True)
        self.changes = ChangeSignal()
        """Wakes this process's live streams when a work-order change is committed."""
        change_signal.install(self._sessions, self.changes, self.dialect == "postgresql")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self._sessions()

    def migrate(self) -> None:
        migrate(self.engine)

    def change_listener(self) -> ChangeListener | None:
        """A listener for other workers' changes (PostgreSQL), not started; None on SQLite."""
        if self.dialect != "postgresql":
            return None
        return ChangeListener(self.engine, self.changes)

    def dispose(self) -> None:
        self.engine.dispose()
