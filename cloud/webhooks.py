"""Signed webhooks: every work-order change, POSTed in batches to each subscriber.

Delivery state (cursor, failures, next attempt) lives in the ``webhooks`` table, so any worker
may deliver and a restart resumes where it stopped. A worker claims a due webhook by moving its
``next_attempt_at`` forward (a lease) in one conditional UPDATE; only the claimer posts.
A failing subscriber is retried with capped exponential backoff and never holds up anything else:
delivery runs in its own task, with a timeout per request.

Each request carries ``X-Gatehouse-Timestamp`` and ``X-Gatehouse-Signature: v1=<hex>``, the
HMAC-SHA256 of ``"{timestamp}." + body`` under the webhook's secret (see
:func:`cloud.security.sign_body`); receivers should refuse stale timestamps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud import changes
from cloud.db import Database
from cloud.models import Webhook
from cloud.security import sign_body

log = logging.getLogger(__name__)
Transport = Callable[[str, bytes, dict[str, str], float], int]
"""``(url, body, headers, timeout) -> HTTP status``; raises ``OSError``/``httpx.HTTPError``."""
BATCH = 50
LEASE = 60.0


def http_transport(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code


@dataclass
class DeliveryStats:
    delivered: int = 0
    failures: int = 0


class WebhookDelivery:
    """Delivers pending changes to every due webhook; one call is one pass."""

    def __init__(
        self, db: Database, *, timeout: float, retry_initial: float, retry_max: float,
        transport: Transport = http_transport,
    ) -> None:
        self._db = db
        self._timeout = timeout
        self._initial = retry_initial
        self._max = retry_max
        self._transport = transport
        self.stats = DeliveryStats()

    def run_once(self, now: float) -> int:
        """Deliver what is due at ``now``; return the number of changes delivered."""
        with self._db.session() as session:
            due = list(session.scalars(
                select(Webhook.id).where(Webhook.active.is_(True), Webhook.next_attempt_at <= now)
                .order_by(Webhook.id)
            ))
        return sum(self._deliver(hook_id, now) for hook_id in due)

    def _deliver(self, hook_id: int, now: float) -> int:
        with self._db.session() as session, session.begin():
            claimed = session.execute(
                update(Webhook).where(Webhook.id == hook_id, Webhook.next_attempt_at <= now)
                .values(next_attempt_at=now + LEASE)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return 0
            hook = session.get(Webhook, hook_id)
            assert hook is not None
            sites = None if hook.site_id is None else frozenset({hook.site_id})
            pending = changes.since(session, hook.cursor, sites, limit=BATCH)
            url, secret, cursor = hook.url, hook.secret, hook.cursor
        if not pending:
            self._finish(hook_id, cursor, None, now)
            return 0
        body = json.dumps({"changes": [changes.as_message(c) for c in pending]}).encode()
        stamp = int(now)
        headers = {
            "Content-Type": "application/json",
            "X-Gatehouse-Timestamp": str(stamp),
            "X-Gatehouse-Signature": "v1=" + sign_body(secret.encode(), body, stamp),
        }
        try:
            status = self._transport(url, body, headers, self._timeout)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except (OSError, httpx.HTTPError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            self.stats.delivered += len(pending)
            self._finish(hook_id, pending[-1].id, None, now, delivered=len(pending))
            return len(pending)
        self.stats.failures += 1
        log.warning("webhook %d (%s) failed: %s", hook_id, url, error)
        self._finish(hook_id, cursor, error, now)
        return 0

    def _finish(
        self, hook_id: int, cursor: int, error: str | None, now: float, delivered: int = 0
    ) -> None:
        with self._db.session() as session, session.begin():
            hook = session.get(Webhook, hook_id)
            if hook is None:
                return
            hook.cursor = cursor
            if error is None:
                hook.failures = 0
                hook.next_attempt_at = 0.0
                hook.last_error = None
                hook.delivered += delivered
            else:
                hook.failures += 1
                hook.next_attempt_at = now + self.backoff(hook.failures)
                hook.last_error = error[:500]

    def backoff(self, failures: int) -> float:
        """Seconds before attempt ``failures + 1``: doubling from the initial, capped."""
        return float(min(self._max, self._initial * 2 ** max(0, failures - 1)))


def start_after_latest(session: Session) -> int:
    """Cursor for a new subscriber: only changes from now on."""
    return changes.latest_id(session)
