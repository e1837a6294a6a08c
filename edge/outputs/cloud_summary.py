"""Telemetry output: per-device one-minute summaries for the cloud's built-in dashboard.

The demo (and any site without a time-series database) still wants readings over time on
the dashboard's device and energy pages. This output averages each device's readings per
minute in memory (mean and max per field, and the count) and posts closed minutes to the
cloud's ``POST /api/v1/telemetry`` in batches, from a background thread, with jittered
backoff while the cloud is unreachable.

What it promises, and what it does not:

* :meth:`CloudSummaryOutput.write` never blocks on the network and never raises for the
  cloud being down, so the runner never spools summaries (they are display data; the
  authoritative path is the TSDB writer).
* A minute closes when the device reports a later minute, or when nothing arrived for it for
  ``idle_close`` seconds. A minute sent in two parts (a late reading) is merged by the cloud,
  weighted by ``count``, so it is never doubled.
* Memory is bounded: at most ``max_pending`` closed minutes wait for the cloud; beyond that
  the oldest are dropped and counted. A closed minute waits as its JSON encoding (about 0.5 KB
  for a pump; as dicts of floats it took 1.3 KB), so the 20,000 minutes a long cloud outage
  can pile up cost the gateway about 11 MB, not 26. A crash loses the minutes in memory; that
  is accepted.
* A batch the cloud refuses as malformed (4xx other than 401/403/408/429) is dropped and
  counted, never retried forever.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from device_profiles.messages import Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import SiteConfig
from edge.backoff import Backoff

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DISABLE_ENV = "GATEHOUSE_CLOUD_SUMMARY"
"""Set to ``off`` (or ``0``/``false``) to keep this output from being built."""
PATH = "/api/v1/telemetry"
EVIDENCE_PATH = "/api/v1/evidence"


class SummaryUnavailable(RuntimeError):
    """The cloud could not take a batch now (network, 5xx, 408, 429, 401/403); retry later."""


class SummaryRejected(RuntimeError):
    """The cloud refused a batch as malformed; resending the same batch cannot help."""


class SummaryTransport(Protocol):
    """Posts one batch of minute items for a site; raises one of the two errors above.

    Each item is one minute's JSON object, already encoded (:func:`batch_body` makes the
    request body of a batch)."""

    def post(self, site_id: str, items: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...


class HttpSummaryTransport:
    """``POST {url}/api/v1/telemetry`` with the site's gateway token (httpx)."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 10.0, ca_file: str | None = None
    ) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout, verify=ca_file or True,
            headers={"Authorization": f"Bearer {token}"},
        )

    def post(self, site_id: str, items: Sequence[bytes]) -> None:
        try:
            reply = self._client.post(
                PATH, content=batch_body(site_id, items),
                headers={"Content-Type": "application/json"},
            )
        except self._httpx.HTTPError as exc:
            raise SummaryUnavailable(f"cloud unreachable: {exc}") from exc
        code = reply.status_code
        if code < 300:
            return
        if code >= 500 or code in (401, 403, 408, 429):
            raise SummaryUnavailable(f"cloud answered {code}: {reply.text[:200]}")
        raise SummaryRejected(f"cloud refused the batch ({code}): {reply.text[:300]}")

    def close(self) -> None:
        self._client.close()


def batch_body(site_id: str, items: Sequence[bytes]) -> bytes:
    """The ``POST /api/v1/telemetry`` body of a batch: ``{"site_id": ..., "items": [...]}``
    from items already encoded (no item is decoded or encoded again)."""
    return b'{"site_id":%s,"items":[%s]}' % (orjson.dumps(site_id), b",".join(items))


def upload_evidence(client: httpx.Client, evidence_dir: Path | str, snapshot: str) -> None:
    """Send the evidence JPEG an event names in ``evidence.snapshot`` to the cloud.

    ``client`` carries the cloud's base URL and the site's gateway token; ``snapshot`` is
    the path relative to ``evidence_dir`` (and becomes the image's name in the cloud, so the
    dashboard finds it from the event). Faces must already be blurred. Safe to repeat: the
    cloud replaces an image uploaded twice. Raises :class:`SummaryUnavailable` (retry later)
    or :class:`SummaryRejected` (bad name or not a JPEG: retrying cannot help).
    """
    import httpx

    root = Path(evidence_dir).resolve()
    path = (root / snapshot).resolve()
    if not path.is_relative_to(root):
        raise SummaryRejected(f"snapshot {snapshot!r} is outside the evidence folder")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SummaryRejected(f"cannot read evidence {path}: {exc}") from exc
    try:
        reply = client.post(EVIDENCE_PATH, params={"name": snapshot}, content=data,
                            headers={"Content-Type": "image/jpeg"})
    except httpx.HTTPError as exc:
        raise SummaryUnavailable(f"cloud unreachable: {exc}") from exc
    if reply.status_code < 300:
        return
    if reply.status_code >= 500 or reply.status_code in (401, 403, 408, 429):
        raise SummaryUnavailable(f"cloud answered {reply.status_code}: {reply.text[:200]}")
    raise SummaryRejected(f"cloud refused the image ({reply.status_code}): {reply.text[:300]}")


class _Fields:
    """One kind's field names and their positions in a minute's arrays (shared by every
    device of the kind). Without a profile's field list, names are added as they come."""

    __slots__ = ("fixed", "index", "names")

    def __init__(self, names: Sequence[str], fixed: bool) -> None:
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.fixed = fixed

    def position(self, name: str) -> int | None:
        """The field's position; ``None`` for a field the kind's profile does not have."""
        i = self.index.get(name)
        if i is None and not self.fixed:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i


class _Minute:
    """One device's minute: per-field sums, counts and maxima as flat arrays, by position."""

    __slots__ = ("count", "counts", "fields", "kind", "maxima", "sums", "touched")

    def __init__(self, kind: str, fields: _Fields) -> None:
        n = len(fields.names)
        self.kind = kind
        self.fields = fields
        self.count = 0
        self.touched = 0.0
        self.sums = array("d", bytes(8 * n))
        self.counts = array("I", bytes(4 * n))
        self.maxima = array("d", [-math.inf]) * n

    def add(self, i: int, value: float) -> None:
        if i >= len(self.sums):  # a field first seen after the minute opened
            grow = i + 1 - len(self.sums)
            self.sums.extend([0.0] * grow)
            self.counts.extend([0] * grow)
            self.maxima.extend([-math.inf] * grow)
        self.sums[i] += value
        self.counts[i] += 1
        if value > self.maxima[i]:
            self.maxima[i] = value

    def item(self) -> tuple[dict[str, float], dict[str, float]]:
        """``(means, maxima)`` of the fields that had a value."""
        names = self.fields.names
        means: dict[str, float] = {}
        maxima: dict[str, float] = {}
        for i, c in enumerate(self.counts):
            if c:
                means[names[i]] = self.sums[i] / c
                maxima[names[i]] = self.maxima[i]
        return means, maxima


@dataclass
class SummaryStats:
    """Counters of the output (exposed through :meth:`CloudSummaryOutput.stats`)."""

    readings: int = 0
    values_dropped: int = 0
    minutes_closed: int = 0
    items_posted: int = 0
    batches_posted: int = 0
    post_failures: int = 0
    batches_rejected: int = 0
    items_dropped_overflow: int = 0


class CloudSummaryOutput:
    """Minute summaries of every device's readings, posted to the cloud in the background.

    ``transport`` posts a batch (tests pass a fake); ``monotonic`` is the clock for closing
    idle minutes and pacing retries. With ``start_thread=False`` nothing runs by itself:
    call :meth:`pump` to close and post what is due (the tests do).
    """

    def __init__(
        self, site_id: str, transport: SummaryTransport, *,
        buildings: Mapping[str, str] | None = None,
        fields: Mapping[str, frozenset[str]] | None = None,
        idle_close: float = 75.0, flush_interval: float = 5.0, batch_size: int = 500,
        max_pending: int = 20_000, retry_initial: float = 1.0, retry_max: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic, start_thread: bool = True,
    ) -> None:
        if idle_close <= 0 or flush_interval <= 0:
            raise ValueError("idle_close and flush_interval must be positive")
        if not 1 <= batch_size <= 5000:
            raise ValueError("batch_size must be 1..5000 (the cloud takes at most 5000 items)")
        if max_pending < batch_size:
            raise ValueError("max_pending must be at least batch_size")
        self.site_id = site_id
        self._transport = transport
        self._buildings = dict(buildings or {})
        self._fields = {k: _Fields(sorted(v), fixed=True) for k, v in (fields or {}).items()}
        self._idle_close = idle_close
        self._interval = flush_interval
        self._batch_size = batch_size
        self._pending: deque[bytes] = deque()
        """Closed minutes waiting for the cloud, each as its JSON object (bytes)."""
        self._max_pending = max_pending
        self._backoff = Backoff(retry_initial, retry_max)
        self._retry_at = 0.0
        self._now = monotonic
        self._open: dict[tuple[str, float], _Minute] = {}
        self._latest: dict[str, float] = {}
        self._lock = threading.Lock()
        self._post_lock = threading.Lock()
        self._stats = SummaryStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(
                target=self._run, name="cloud-summary", daemon=True
            )
            self._thread.start()

    @classmethod
    def from_site(
        cls, site: SiteConfig, profiles: Mapping[str, DeviceProfile]
    ) -> CloudSummaryOutput | None:
        """The output for a site with a cloud token; ``None`` without one or when disabled."""
        if os.environ.get(DISABLE_ENV, "").strip().lower() in ("off", "0", "false", "no"):
            return None
        token = site.cloud.resolve_token()
        if not token:
            return None
        transport = HttpSummaryTransport(
            site.cloud.url, token, timeout=site.cloud.timeout, ca_file=site.cloud.ca_file
        )
        return cls(
            site.site_id, transport,
            buildings={d.id: d.building for d in site.all_devices()},
            fields={kind: frozenset(p.fields) for kind, p in profiles.items()},
            retry_initial=max(0.1, site.cloud.retry_initial),
            retry_max=max(site.cloud.retry_max, max(0.1, site.cloud.retry_initial)),
        )

    def write(self, readings: Sequence[Reading]) -> None:
        """Fold ``readings`` into their minutes; never touches the network, never raises."""
        now = self._now()
        with self._lock:
            for r in readings:
                if not (math.isfinite(r.ts) and r.ts >= 0):
                    self._stats.values_dropped += len(r.values)
                    continue
                minute = math.floor(r.ts / 60.0) * 60.0
                bucket = self._open.get((r.device_id, minute))
                if bucket is None:
                    layout = self._fields.get(r.kind)
                    if layout is None:
                        layout = self._fields[r.kind] = _Fields((), fixed=False)
                    bucket = self._open[(r.device_id, minute)] = _Minute(r.kind, layout)
                position = bucket.fields.position
                kept = 0
                for name, raw in r.values.items():
                    value = float(raw)
                    i = position(name)
                    if i is None or not math.isfinite(value):
                        self._stats.values_dropped += 1
                        continue
                    bucket.add(i, value)
                    kept += 1
                if kept:
                    bucket.count += 1
                bucket.touched = now
                self._stats.readings += 1
                if minute > self._latest.get(r.device_id, -1.0):
                    self._latest[r.device_id] = minute

    def pump(self, *, close_all: bool = False) -> int:
        """Close the minutes that are due and post what is pending; returns items posted.

        Posting stops at the first failure (the rest waits for the backoff delay).
        """
        self._close_due(close_all)
        posted = 0
        with self._post_lock:
            if self._now() < self._retry_at:
                return 0
            while True:
                with self._lock:
                    batch = [self._pending[i] for i in range(min(self._batch_size,
                                                                 len(self._pending)))]
                if not batch:
                    break
                try:
                    self._transport.post(self.site_id, batch)
                except SummaryRejected as exc:
                    self._stats.batches_rejected += 1
                    log.warning("cloud summary batch of %d dropped: %s", len(batch), exc)
                    self._drop_sent(len(batch))
                    continue
                except SummaryUnavailable as exc:
                    self._stats.post_failures += 1
                    delay = self._backoff.next_delay()
                    self._retry_at = self._now() + delay
                    log.info("cloud summaries wait %.1fs: %s", delay, exc)
                    break
                self._backoff.reset()
                self._drop_sent(len(batch))
                posted += len(batch)
                self._stats.items_posted += len(batch)
                self._stats.batches_posted += 1
        return posted

    def pending(self) -> int:
        """Closed minutes waiting for the cloud."""
        with self._lock:
            return len(self._pending)

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._stats.__dict__)
            out["pending"] = len(self._pending)
            out["open_minutes"] = len(self._open)
        return out

    def close(self) -> None:
        """Stop the thread, close every minute and try once to post what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 15)
        self._retry_at = 0.0
        try:
            self.pump(close_all=True)
        except Exception as exc:  # the last flush on shutdown must not stop the shutdown
            log.warning("cloud summaries: final flush failed: %s", exc)
        self._transport.close()

    def _drop_sent(self, n: int) -> None:
        with self._lock:
            for _ in range(min(n, len(self._pending))):
                self._pending.popleft()

    def _close_due(self, close_all: bool) -> None:
        now = self._now()
        with self._lock:
            due = [
                key for key, b in self._open.items()
                if close_all or key[1] < self._latest.get(key[0], key[1])
                or now - b.touched >= self._idle_close
            ]
            for key in sorted(due, key=lambda k: k[1]):
                bucket = self._open.pop(key)
                means, maxima = bucket.item()
                if not means:
                    continue
                device_id, minute = key
                encoded = orjson.dumps({
                    "device_id": device_id, "kind": bucket.kind,
                    "building": self._buildings.get(device_id), "ts": minute,
                    "values": means, "max": maxima, "count": max(1, bucket.count),
                })
                # orjson's bytes keep the 4 KiB it allocated to write into: kept for
                # minutes, an item is copied to its own size (a sixth of the memory).
                self._pending.append(bytes(memoryview(encoded)))
                self._stats.minutes_closed += 1
            overflow = len(self._pending) - self._max_pending
            for _ in range(max(0, overflow)):
                self._pending.popleft()
            self._stats.items_dropped_overflow += max(0, overflow)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.pump()
            except Exception:  # the task's boundary: count, log, keep summarising
                self._stats.post_failures += 1
                log.exception("cloud summaries: pump failed (site %s)", self.site_id)
