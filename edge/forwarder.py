"""Forwarding the outbox to the cloud: batches over HTTP, retried until acknowledged.

The forwarder reads the outbox, oldest first and the ``critical`` lane before the
``events`` lane, posts :class:`~device_profiles.messages.EventBatch` bodies to
``POST {cloud}/api/v1/events`` with the gateway's bearer token, and applies the
:class:`~device_profiles.messages.EventBatchResult` reply:

* ``accepted`` and ``duplicates`` are deleted from the outbox (the cloud has them);
* ``rejected`` events go to the dead letters with the cloud's reason, then are deleted;
* events the reply does not mention stay queued and are sent again.

Any other status (401/403, 404, 429, 5xx...), timeouts and connection errors keep everything
queued and wait (at least the reply's ``Retry-After`` seconds, when it gives one) a
jittered exponential backoff capped at ``cloud.retry_max``. 400/413/422 mean the batch
itself is refused: the forwarder halves the batch until the one bad event is isolated, and
dead-letters only that one. A configurable drain rate (events per second) keeps a large
backlog after an outage from flooding the cloud. The token is never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import ValidationError

from device_profiles.messages import EventBatchResult
from edge.backoff import Backoff, RateLimiter
from edge.deadletter import DeadLetters
from edge.metrics import Metrics
from edge.outbox import CRITICAL, EVENTS, Item, Outbox
from edge.sqlite_store import StoreError

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
Outcome = Literal["idle", "sent", "retry", "split", "rate_limited"]
_SPLIT_STATUS = frozenset({400, 413, 422})


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one :meth:`Forwarder.run_once` did, and how long to wait before the next."""

    outcome: Outcome
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    delay: float = 0.0
    detail: str = ""


class Forwarder:
    """Drains the outbox's event lanes to the cloud (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        base_url: str,
        token: str | None,
        client: httpx.Client | None = None,
        deadletters: DeadLetters | None = None,
        metrics: Metrics | None = None,
        batch_size: int = 200,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        timeout: float = 10.0,
        verify: bool | str = True,
        drain_rate: float | None = None,
        idle_wait: float = 0.2,
        lanes: tuple[str, ...] = (CRITICAL, EVENTS),
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"cloud url must start with http:// or https://, got {base_url!r}")
        self._outbox = outbox
        self._url = base_url.rstrip("/") + EVENTS_PATH
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._client = client or httpx.Client(timeout=timeout, verify=verify)
        self._owns_client = client is None
        self._deadletters = deadletters
        self._metrics = metrics or Metrics()
        self._batch_size = batch_size
        self._limit = batch_size
        self._backoff = (
            Backoff(retry_initial, retry_max, rng=rng) if rng else Backoff(retry_initial, retry_max)
        )
        self._rate = RateLimiter(
            drain_rate, burst=max(1.0, drain_rate) if drain_rate else None, clock=clock
        )
        self._idle_wait = idle_wait
        self._wake = threading.Event()
        self._lanes = lanes
        self.last_error = ""
        self.last_success: float | None = None

    def run_once(self) -> Attempt:
        """Send at most one batch and apply the reply; never raises on network trouble."""
        allowance = self._rate.allowance()
        if allowance < 1:
            return Attempt("rate_limited", delay=self._rate.delay_for(1))
        items = self._next_batch(min(self._limit, allowance))
        if not items:
            return Attempt("idle", delay=self._idle_wait)
        self._rate.take(len(items))
        body = b'{"events":[' + b",".join(item.payload for item in items) + b"]}"
        try:
            response = self._client.post(self._url, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return self._retry("connection", f"{type(exc).__name__}: {exc}", len(items))
        status = response.status_code
        if status == 200:
            return self._apply(items, response)
        if status in _SPLIT_STATUS:
            return self._split(items, status, response.text[:300])
        reason = "auth" if status in (401, 403) else f"http_{status}"
        attempt = self._retry(reason, f"HTTP {status}: {response.text[:200]}", len(items))
        asked = _retry_after(response)
        if asked is not None and asked > attempt.delay:
            return Attempt("retry", sent=len(items), delay=min(asked, self._backoff.maximum),
                           detail=attempt.detail)
        return attempt

    def wake(self) -> None:
        """New events are durable in the outbox: stop idling and send them now."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set. Unexpected errors are counted, logged, survived.

        While idle it sleeps until :meth:`wake` (called by the agent after each commit) or
        the idle poll; while backing off it sleeps the backoff, whatever arrives.
        """
        while not stop.is_set():
            try:
                attempt = self.run_once()
            except Exception:  # the forwarder thread must outlive any single failure
                self._metrics.inc("forwarder_errors")
                log.exception("forwarder: unexpected error; retrying")
                attempt = Attempt("retry", delay=self._backoff.next_delay())
            if attempt.outcome in ("sent", "split") and attempt.delay == 0.0:
                continue
            if attempt.outcome == "idle":
                self._wake.wait(attempt.delay)
                self._wake.clear()
            else:
                stop.wait(attempt.delay)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _next_batch(self, n: int) -> list[Item]:
        items: list[Item] = []
        for lane in self._lanes:
            if len(items) >= n:
                break
            items.extend(self._outbox.peek(lane, n - len(items)))
        return items

    def _apply(self, items: list[Item], response: httpx.Response) -> Attempt:
        try:
            result = EventBatchResult.model_validate_json(response.content)
        except ValidationError as exc:
            return self._retry("bad_reply", f"unreadable reply: {exc.error_count()} errors", 0)
        done = set(result.accepted) | set(result.duplicates)
        rejected = {r.event_id: r.reason for r in result.rejected}
        by_key = {item.key: item for item in items}
        if rejected and self._deadletters is not None:
            letters = [
                ("cloud", "cloud_rejected", reason[:300], by_key[key].payload)
                for key, reason in rejected.items() if key in by_key
            ]
            try:
                self._deadletters.add_many(letters)
            except StoreError as exc:
                log.warning("forwarder: could not keep %d cloud rejections: %s", len(letters), exc)
                return self._retry("store", str(exc), 0)
        acked = 0
        for lane in self._lanes:
            keys = [i.key for i in items if i.lane == lane and (i.key in done or i.key in rejected)]
            acked += self._outbox.ack(lane, keys)
        self._metrics.inc("forwarded", float(len(done & by_key.keys())))
        self._metrics.inc("forward_duplicates", float(len(set(result.duplicates))))
        if rejected:
            self._metrics.inc("forward_rejected", float(len(rejected)))
            log.warning("cloud rejected %d event(s), kept in dead letters", len(rejected))
        missing = len(by_key.keys() - done - rejected.keys())
        if missing:
            self._metrics.inc("forward_unacknowledged", float(missing))
        self._backoff.reset()
        self._limit = self._batch_size
        self.last_error = ""
        self.last_success = time.time()
        if missing and not done and not rejected:
            return Attempt("retry", sent=len(items), delay=self._backoff.next_delay(),
                           detail="reply acknowledged nothing")
        return Attempt("sent", sent=len(items), acked=acked, rejected=len(rejected))

    def _split(self, items: list[Item], status: int, text: str) -> Attempt:
        if len(items) > 1:
            self._limit = max(1, len(items) // 2)
            self._metrics.inc("forward_splits")
            return Attempt("split", sent=len(items), detail=f"HTTP {status}; halving batch")
        item = items[0]
        if self._deadletters is not None:
            try:
                self._deadletters.add_many(
                    [("cloud", "cloud_rejected", f"HTTP {status}: {text}", item.payload)]
                )
            except StoreError as exc:
                return self._retry("store", str(exc), 0)
        self._outbox.ack(item.lane, [item.key])
        self._metrics.inc("forward_rejected")
        log.warning("cloud refused event %s with HTTP %d; kept in dead letters", item.key, status)
        self._limit = self._batch_size
        return Attempt("split", sent=1, rejected=1, detail=f"HTTP {status}")

    def _retry(self, reason: str, detail: str, n: int) -> Attempt:
        self._metrics.inc("forward_failures", reason=reason)
        delay = self._backoff.next_delay()
        if detail != self.last_error:
            log.warning("forwarding %d event(s) failed (%s); retrying in %.1fs", n, detail, delay)
        self.last_error = detail
        return Attempt("retry", sent=n, delay=delay, detail=detail)


def _retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (the delta form only), if any."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
