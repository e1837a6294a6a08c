"""Set-based writes of the intake, one implementation per database.

SQLite: ``executemany`` (cheap in-process). PostgreSQL: one statement per operation over
``unnest`` of array parameters, so a 500-event batch is a handful of round trips with short,
cacheable statements instead of thousands of placeholders to parse.
Both give the same results; ``tests/test_cloud_intake.py`` runs on both.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite

from cloud.models import ACTIVE_SQL, Change, EventRow, WorkOrder


class BulkWriter(Protocol):
    def insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert events not yet stored; return the ids inserted now."""

    def attach(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Add ``n`` events to each active order ``oid``; return the orders updated."""

    def insert_changes(self, conn: Connection, rows: list[dict[str, Any]]) -> None: ...

    def link_events(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Set ``work_order_id = wo`` on each event ``eid``."""


class ExecutemanyWriter:
    """Portable: plain ``executemany`` statements (used for SQLite)."""

    def insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        table: Any = EventRow.__table__
        stmt = (
            sqlite.insert(table).on_conflict_do_nothing(index_elements=["event_id"])
            .returning(table.c.event_id)
        )
        return {str(r[0]) for r in conn.execute(stmt, rows)}

    def attach(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        table: Any = WorkOrder.__table__
        stmt = (
            table.update()
            .where(table.c.id == bindparam("oid"), text("work_orders." + ACTIVE_SQL))
            .values(
                event_count=table.c.event_count + bindparam("n"),
                last_event_at=bindparam("last"), condition_cleared=bindparam("cleared"),
                version=table.c.version + 1,
            )
        )
        return int(conn.execute(stmt, rows).rowcount)

    def insert_changes(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        table: Any = Change.__table__
        conn.execute(table.insert(), rows)

    def link_events(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        table: Any = EventRow.__table__
        conn.execute(
            table.update().where(table.c.event_id == bindparam("eid"))
            .values(work_order_id=bindparam("wo")),
            rows,
        )


class PostgresWriter:
    """PostgreSQL: ``unnest`` of arrays, one short statement per operation."""

    _INSERT_EVENTS = text(
        "INSERT INTO events (event_id, site_id, gateway_id, device_id, kind, type, severity, "
        "state, ts, received_at, evidence, forecast) "
        "SELECT u.e, u.s, u.g, u.d, u.k, u.t, u.sv, u.st, u.ts, u.r, u.ev::json, u.fc::json "
        "FROM unnest(CAST(:e AS text[]), CAST(:s AS text[]), CAST(:g AS text[]), "
        "CAST(:d AS text[]), CAST(:k AS text[]), CAST(:t AS text[]), CAST(:sv AS text[]), "
        "CAST(:st AS text[]), CAST(:ts AS float8[]), CAST(:r AS float8[]), "
        "CAST(:ev AS text[]), CAST(:fc AS text[])) "
        "AS u(e, s, g, d, k, t, sv, st, ts, r, ev, fc) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )
    _ATTACH = text(
        "UPDATE work_orders SET event_count = work_orders.event_count + u.n, "
        "last_event_at = u.last, condition_cleared = u.cleared, "
        "version = work_orders.version + 1 "
        "FROM unnest(CAST(:oid AS int[]), CAST(:n AS int[]), CAST(:last AS float8[]), "
        "CAST(:cleared AS bool[])) AS u(oid, n, last, cleared) "
        "WHERE work_orders.id = u.oid AND work_orders." + ACTIVE_SQL
    )
    _CHANGES = text(
        "INSERT INTO changes (ts, site_id, work_order_id, topic, payload) "
        "SELECT u.ts, u.s, u.w, u.t, u.p::json FROM unnest(CAST(:ts AS float8[]), "
        "CAST(:s AS text[]), CAST(:w AS int[]), CAST(:t AS text[]), CAST(:p AS text[])) "
        "AS u(ts, s, w, t, p)"
    )
    _LINK = text(
        "UPDATE events SET work_order_id = u.wo FROM unnest(CAST(:eid AS text[]), "
        "CAST(:wo AS int[])) AS u(eid, wo) WHERE events.event_id = u.eid"
    )

    def insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        params = {
            "e": [r["event_id"] for r in rows], "s": [r["site_id"] for r in rows],
            "g": [r["gateway_id"] for r in rows], "d": [r["device_id"] for r in rows],
            "k": [r["kind"] for r in rows], "t": [r["type"] for r in rows],
            "sv": [r["severity"] for r in rows], "st": [r["state"] for r in rows],
            "ts": [r["ts"] for r in rows], "r": [r["received_at"] for r in rows],
            "ev": [json.dumps(r["evidence"]) for r in rows],
            "fc": [None if r["forecast"] is None else json.dumps(r["forecast"]) for r in rows],
        }
        return {str(r[0]) for r in conn.execute(self._INSERT_EVENTS, params)}

    def attach(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        params = {
            "oid": [r["oid"] for r in rows], "n": [r["n"] for r in rows],
            "last": [r["last"] for r in rows], "cleared": [r["cleared"] for r in rows],
        }
        return int(conn.execute(self._ATTACH, params).rowcount)

    def insert_changes(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.execute(self._CHANGES, {
            "ts": [r["ts"] for r in rows], "s": [r["site_id"] for r in rows],
            "w": [r["work_order_id"] for r in rows], "t": [r["topic"] for r in rows],
            "p": [json.dumps(r["payload"]) for r in rows],
        })

    def link_events(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.execute(self._LINK, {"eid": [r["eid"] for r in rows],
                                  "wo": [r["wo"] for r in rows]})


def writer_for(dialect: str) -> BulkWriter:
    return PostgresWriter() if dialect == "postgresql" else ExecutemanyWriter()


def upsert_ignore(dialect: str, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` builder of the dialect (for small inserts)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
