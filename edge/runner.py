"""The agent: MQTT in, validation, detection, durable outbox, forwarding, telemetry outputs.

The runner owns everything the stages must not: the queue from the MQTT thread, bursts,
durability order, acknowledgements, retry and back-pressure, the disk reserve and the
self-metrics. One burst goes like this:

1. take up to ``burst_max`` messages from the queue (whatever is waiting, no per-message
   round trip);
2. validate each; rejections are counted by reason and kept as dead letters; readings go
   to detection, status changes to ``on_status``, device-native events become events;
3. commit the burst's events to the outbox, critical lane first, in one transaction per lane
   (``synchronous=FULL``), and hand the burst's readings to the telemetry writer thread;
4. acknowledge the burst's MQTT messages once its events are committed and its readings
   written or spooled.

If the outbox cannot be written (disk full), critical events take the reserve and the
other events are held in memory: detection goes on (so later critical alarms still get
through) but nothing is acknowledged until everything is written, so the broker keeps what
is not yet durable (``Receive Maximum`` bounds how much it sends meanwhile). The health
endpoint says ``degraded`` until the disk recovers, which the agent notices by itself.

Telemetry outputs get each burst's readings on their own thread
(:class:`~edge.outputs.writer_thread.TelemetryWriterThread`: a bounded queue, back-pressure
rather than drops); a failed write is spooled to the outbox's bounded ``telemetry`` lane and
replayed later with backoff on that thread (the outputs themselves never retry). The
forwarder thread drains the event lanes to the cloud. A clock tick once a second lets every
monitor notice silence (device offline).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, Reading
from device_profiles.schema import DeviceProfile
from device_profiles.site import SiteConfig
from edge.allocator import release_free
from edge.backoff import Backoff
from edge.camera_bridge import FRAME_CHANNEL, CameraBridge, video_cameras
from edge.datalock import DataDirLock
from edge.deadletter import DeadLetters
from edge.detection import DEFAULT_CONFIRM_PERIODS, Detection, MonitorsFactory
from edge.detectors.base import build_monitors
from edge.detectors.compact import spill_warmup_rows_to, stop_spilling_to
from edge.detectors.fit_budget import limit_fitting, stop_limiting
from edge.diskguard import DiskGuard, statvfs_free
from edge.events import outbox_entry
from edge.forwarder import Forwarder
from edge.inbox import Inbox
from edge.metrics import HealthServer, Metrics, Sample
from edge.mqtt_input import InboundMessage, MqttInput
from edge.outbox import CRITICAL, EVENTS, TELEMETRY, Entry, Outbox, default_lanes
from edge.outputs import TelemetryOutput, build_outputs
from edge.outputs.writer_thread import TelemetryWriterThread
from edge.sqlite_store import StoreError, StoreFull
from edge.validate import DEFAULT_MAX_PAYLOAD, NativeEvent, Rejection, StatusChange, Validator

log = logging.getLogger(__name__)

IDLE_WAIT = 0.2
"""Longest the runner sleeps with nothing to do (new messages and finished telemetry
writes wake it sooner)."""

OUTBOX_FILE = "outbox.db"
DEADLETTER_FILE = "deadletters.db"
WARMUP_DIR = "warmup"
"""Learned models' warm-up rows, on disk rather than in memory until each model is fitted."""


class MessageSource(Protocol):
    """Where messages come from (the MQTT input; a fake in unit tests)."""

    connected: bool
    last_error: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ack(self, message: InboundMessage) -> bool: ...


SourceFactory = Callable[[Callable[[InboundMessage], None]], MessageSource]
"""Builds the message source given the sink it must call for every message."""


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """Tuning of the agent that the site file does not carry (all have safe defaults)."""

    data_dir: Path | None = None
    """Default: the site's ``data_dir``."""
    http_port: int | None = None
    """Default: the site's ``http_port``; ``None`` there too disables /healthz and /metrics."""
    http_host: str = "127.0.0.1"
    burst_max: int = 500
    tick_interval: float = 1.0
    max_payload: int = DEFAULT_MAX_PAYLOAD
    receive_maximum: int = 10_000
    queue_max: int = 200_000
    deadletter_max_rows: int = 10_000
    telemetry_max_bytes: int = 64 * 1024 * 1024
    reserve_bytes: int = 8 * 1024 * 1024
    low_water_bytes: int = 16 * 1024 * 1024
    drain_rate: float | None = None
    """Events per second sent to the cloud at most (``None``: as fast as it answers)."""
    telemetry_retry_initial: float = 1.0
    telemetry_retry_max: float = 30.0
    held_retry: float = 0.5
    """Seconds between attempts to write a held burst (disk full)."""
    telemetry_linger: float = 0.1
    """Seconds a small telemetry write waits for the bursts behind it while messages keep
    arriving (0: write each burst at once). Fewer, larger requests to the time-series
    database; the bursts' acks wait that long too (see ``telemetry_quiet``)."""
    telemetry_quiet: float = 0.005
    """A write stops waiting once no message has arrived for this long (an idle site, or a
    broker holding back until it gets acks), so the wait never stalls an in-flight window."""
    release_memory_every: float | None = 60.0
    """Seconds between asking the C allocator to return its free pages to the system
    (``malloc_trim``; glibc only, a few milliseconds; ``None``: never). See
    :mod:`edge.allocator`."""
    fit_share: float | None = 0.1
    """Seconds per second the runner may spend fitting learned models at most (``None``:
    no cap). Hundreds of pump models that finish their warm-up together then fit over a
    few minutes instead of holding every message back while they fit (see
    :mod:`edge.detectors.fit_budget`)."""
    forward: bool = True
    """Run the forwarder thread (off in tests that look at the outbox itself)."""
    episode_confirm_periods: float = DEFAULT_CONFIRM_PERIODS
    """Sampling periods of fresh data an episode left open by the last run waits for its
    detector to raise it again; then it is closed as "not confirmed after restart"."""

    def __post_init__(self) -> None:
        if self.burst_max < 1 or self.tick_interval <= 0 or self.held_retry <= 0:
            raise ValueError("burst_max, tick_interval and held_retry must be positive")
        if self.telemetry_linger < 0 or self.telemetry_quiet < 0:
            raise ValueError("telemetry_linger and telemetry_quiet must not be negative")
        if not self.episode_confirm_periods > 0:
            raise ValueError("episode_confirm_periods must be positive")
        if self.release_memory_every is not None and not self.release_memory_every > 0:
            raise ValueError("release_memory_every must be positive (or None for never)")
        if self.fit_share is not None and not 0.0 < self.fit_share <= 1.0:
            raise ValueError("fit_share must be in (0, 1] (or None for no cap)")
        if self.queue_max <= self.receive_maximum:
            raise ValueError("queue_max must exceed receive_maximum (QoS 1 is never dropped)")


@dataclass
class _Pending:
    """Effects of processed messages not yet durable, and the messages to ack after."""

    critical: list[Entry] = field(default_factory=list)
    events: list[Entry] = field(default_factory=list)
    acks: list[InboundMessage] = field(default_factory=list)
    points: list[Event] = field(default_factory=list)
    """Events to mirror into the telemetry database once they are durable."""

    def empty(self) -> bool:
        return not (self.critical or self.events or self.acks)


class Agent:
    """The gateway agent of one site. ``start()`` returns once its threads run.

    ``outputs`` are telemetry outputs by name (default: every registered output the site
    asks for); ``monitor_factory`` builds a device's monitors (default: the profile's
    detectors); ``source_factory`` replaces the MQTT input and ``http_client`` the cloud
    client (tests); ``free_bytes`` replaces the free-space probe of the data folder.
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        profiles: Mapping[str, DeviceProfile] | None = None,
        clock: Callable[[], float] = time.time,
        options: AgentOptions | None = None,
        outputs: Mapping[str, TelemetryOutput] | Sequence[TelemetryOutput] | None = None,
        monitor_factory: MonitorsFactory = build_monitors,
        source_factory: SourceFactory | None = None,
        http_client: httpx.Client | None = None,
        free_bytes: Callable[[Path], int] = statvfs_free,
    ) -> None:
        self.site = site
        self.options = opts = options or AgentOptions()
        self._clock = clock
        self.profiles = dict(
            profiles if profiles is not None else load_profiles(site.profiles_dir)
        )
        self.metrics = Metrics()
        self.data_dir = Path(opts.data_dir or site.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = DataDirLock(self.data_dir)
        self.guard = DiskGuard(
            self.data_dir, reserve_bytes=opts.reserve_bytes,
            low_water_bytes=opts.low_water_bytes, free_bytes=free_bytes,
        )
        self.guard.ensure_reserve()
        self._warmup_dir = self.data_dir / WARMUP_DIR
        spill_warmup_rows_to(self._warmup_dir)
        self._fit_budget = limit_fitting(opts.fit_share)
        if self._fit_budget is not None:
            self.metrics.add_collector(self._fit_budget.samples)
        self.validator = Validator(site, self.profiles, max_payload=opts.max_payload, clock=clock)
        self.detection = Detection(
            site, self.profiles, monitor_factory=monitor_factory, metrics=self.metrics,
            confirm_periods=opts.episode_confirm_periods,
        )
        self.outbox = Outbox(
            self.data_dir / OUTBOX_FILE, default_lanes(opts.telemetry_max_bytes), clock=clock
        )
        self.detection.restore(self.outbox.open_episodes())
        self.deadletters = DeadLetters(
            self.data_dir / DEADLETTER_FILE, max_rows=opts.deadletter_max_rows, clock=clock
        )
        if outputs is None:
            outputs = build_outputs(site, self.profiles)
        if isinstance(outputs, Mapping):
            self._outputs: dict[str, TelemetryOutput] = dict(outputs)
        else:
            self._outputs = {f"output{i}": out for i, out in enumerate(outputs)}
        self._telemetry_backoff = Backoff(opts.telemetry_retry_initial, opts.telemetry_retry_max)
        self._telemetry_retry_at = 0.0
        self._telemetry: TelemetryWriterThread[Reading, Event] | None = (
            TelemetryWriterThread(
                self._write_telemetry, self._write_event_points_now, self._telemetry_idle,
                idle_interval=opts.tick_interval,
                on_full=lambda: self.metrics.inc("telemetry_queue_full"),
                on_error=lambda: self.metrics.inc("runner_errors"),
                on_done=lambda: self._queue.wake(),  # release the burst's acks now
                linger=opts.telemetry_linger,
                more_coming=lambda: self._queue.quiet_for() < opts.telemetry_quiet,
            )
            if self._outputs else None
        )
        """Runs the outputs (and the spool's replay) off the runner thread; see _process."""
        self._telemetry_acks: deque[tuple[int, list[InboundMessage]]] = deque()
        """Bursts whose acks wait for their readings to be written or spooled: (seq, burst)."""
        self._queue: Inbox[InboundMessage] = Inbox(
            opts.queue_max, lambda n: self.metrics.inc("queue_overflow", float(n))
        )
        self._source: MessageSource = (
            source_factory(self._enqueue) if source_factory is not None
            else MqttInput(
                site.mqtt, site_id=site.site_id, gateway_id=site.gateway_id, sink=self._enqueue,
                sink_many=self._queue.put_many, paused=self._queue.saturated,
                receive_maximum=opts.receive_maximum, metrics=self.metrics,
            )
        )
        try:
            token = site.cloud.resolve_token()
        except OSError as exc:
            raise StoreError(f"cloud.token_file {site.cloud.token_file}: {exc.strerror}") from exc
        self.forwarder = Forwarder(
            self.outbox, base_url=site.cloud.url, token=token, client=http_client,
            deadletters=self.deadletters, metrics=self.metrics,
            batch_size=site.cloud.batch_size, retry_initial=site.cloud.retry_initial,
            retry_max=site.cloud.retry_max, timeout=site.cloud.timeout,
            verify=site.cloud.ca_file or True, drain_rate=opts.drain_rate,
        )
        cameras = video_cameras(site)
        self.cameras: CameraBridge | None = (
            CameraBridge(site, cameras, self.data_dir, self.emit_event, self.metrics, token)
            if cameras else None
        )
        self._pending = _Pending()
        self._retry_at = 0.0
        self._store_lock = threading.Lock()
        self._stop = threading.Event()
        self._forward_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: HealthServer | None = None
        self._store_full = False
        self._ingest: deque[list[int]] = deque(maxlen=16)
        """Messages received per whole second of the monotonic clock: [second, count]."""
        self._started = False
        self._first_message_at = 0.0
        """Wall-clock time the first message was received (0 before); with the time of the
        last acknowledgement it times a drain to the millisecond (the ingest benchmark)."""
        self._last_ack_at = 0.0
        self._release_at = time.monotonic() + (self.options.release_memory_every or 0.0)
        self._final: dict[str, Any] | None = None
        self.metrics.add_collector(self._gauges)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the loop, the forwarder, the health server and the MQTT input."""
        if self._started:
            raise RuntimeError("agent already started")
        self._started = True
        port = self.options.http_port if self.options.http_port is not None else self.site.http_port
        if port is not None:
            self._http = HealthServer(
                self.metrics, self.health, host=self.options.http_host, port=port,
                routes={"/deadletters": self._deadletters_page},
            )
            self._http.start()
        if self._telemetry is not None:
            self._telemetry.start()
        loop = threading.Thread(target=self._loop, name="edge-runner", daemon=True)
        self._threads.append(loop)
        if self.options.forward:
            fwd = threading.Thread(
                target=self.forwarder.run, args=(self._forward_stop,), name="edge-forwarder",
                daemon=True,
            )
            self._threads.append(fwd)
        for thread in self._threads:
            thread.start()
        self._source.start()
        if self.cameras is not None:
            self.cameras.start()
        log.info(
            "edge agent for site %s started: %d devices, %d monitors, data in %s",
            self.site.site_id, len(self.site.all_devices()), self.detection.monitor_count,
            self.data_dir,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current burst (commit, ack), then disconnect and close the stores.

        Messages still queued are not acknowledged: the broker keeps them in the session.
        """
        if self._final is not None:
            return
        if self.cameras is not None:
            self.cameras.stop()
        self._stop.set()
        self._queue.wake()
        self._forward_stop.set()
        self.forwarder.wake()
        for thread in self._threads:
            thread.join(timeout)
        self._stop_telemetry(timeout)
        with contextlib.suppress(Exception):
            self._source.stop()
        self._final = self.stats()
        if self._http is not None:
            self._http.stop()
        for name, output in self._outputs.items():
            try:
                output.close()
            except Exception:  # closing one output must not keep the others open
                log.exception("closing output %s failed", name)
        self.forwarder.close()
        with contextlib.suppress(StoreError):
            self.outbox.checkpoint()
        self.outbox.close()
        self.deadletters.close()
        stop_spilling_to(self._warmup_dir)
        stop_limiting(self._fit_budget)
        self._lock_file.release()

    @property
    def http_port(self) -> int | None:
        """The port /healthz and /metrics are served on (useful with port 0)."""
        return None if self._http is None else self._http.port

    # ----------------------------------------------------------------- public hooks

    def emit_event(self, event: Event) -> bool:
        """Queue an event from another producer (the camera service); thread-safe.

        It bypasses the episode registry: such events are one-shot (an object thrown),
        named by their producer's own data time, so a crash cannot rename them.

        Returns ``True`` once the event is durable in the outbox (``False``: it already was).
        Raises :class:`~edge.sqlite_store.StoreFull` if it cannot be written even after a
        critical event took the reserve.
        """
        entry = outbox_entry(event)
        with self._store_lock:
            new = self._put([entry], critical=entry.lane == CRITICAL)
        self.forwarder.wake()
        self.metrics.inc("events", lane=entry.lane, source="emit")
        return new == 1

    def health(self) -> dict[str, Any]:
        """``ok`` or ``degraded`` with the reasons; what /healthz serves."""
        reasons = []
        if self._store_full:
            reasons.append("store_full")
        if self.guard.low():
            reasons.append("disk_low")
        if not self.guard.reserve_held:
            reasons.append("reserve_used")
        if not self._source.connected:
            reasons.append("mqtt_disconnected")
        if self.forwarder.last_error:
            reasons.append("cloud_unreachable")
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "site_id": self.site.site_id,
            "gateway_id": self.site.gateway_id,
            "mqtt": {"connected": self._source.connected, "error": self._source.last_error},
            "cloud": {"error": self.forwarder.last_error},
            "outbox": {lane: self.outbox.depth(lane) for lane in self.outbox.lanes},
            "disk_free_bytes": self.guard.free(),
        }

    def _deadletters_page(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /deadletters?limit=N``: the newest refused messages and counts by reason."""
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            raise ValueError("limit must be an integer") from None
        letters = self.deadletters.recent(max(0, min(limit, 1000)))
        return {
            "kept_by_reason": self.deadletters.by_reason(),
            "letters": [
                {"ts": x.ts, "topic": x.topic, "reason": x.reason, "detail": x.detail,
                 "size": x.size, "payload": x.payload.decode("utf-8", errors="replace")}
                for x in letters
            ],
        }

    def stats(self) -> dict[str, Any]:
        """Counters and gauges as plain values (what the demo and the tests read).

        After :meth:`stop` it returns the figures as they were when the agent stopped.
        """
        if self._final is not None:
            return dict(self._final)
        m = self.metrics
        rejects = {k: int(v) for k, v in m.counters_by("rejects", "reason").items()}
        received = int(m.counter("messages_received"))
        events = int(sum(m.counters_by("events", "lane").values()))
        forwarded = int(m.counter("forwarded"))
        pending = self.outbox.depth(CRITICAL) + self.outbox.depth(EVENTS)
        return {
            "messages_ingested": received,
            "messages_rejected": sum(rejects.values()),
            "events_raised": events,
            "events_forwarded": forwarded,
            "outbox_depth": pending,
            "received": received,
            "readings": int(m.counter("readings")),
            "status_changes": int(m.counter("status_changes")),
            "rejected": sum(rejects.values()),
            "rejects": rejects,
            "events": events,
            "acked": int(m.counter("mqtt_acks")),
            "forwarded": forwarded,
            "forward_failures": int(sum(m.counters_by("forward_failures", "reason").values())),
            "outbox": {lane: self.outbox.depth(lane) for lane in self.outbox.lanes},
            "evicted": {lane: self.outbox.evictions(lane) for lane in self.outbox.lanes},
            "telemetry_dropped": int(sum(m.counters_by("telemetry_dropped", "reason").values())),
            "telemetry_spooled": int(m.counter("telemetry_spooled")),
            "deadletters": self.deadletters.count(),
            "queue": self._queue.qsize(),
            "held": not self._pending.empty(),
            "degraded": self.health()["status"] != "ok",
            "camera_frames": int(m.counter("camera_frames")),
            "cameras": self.cameras.stats() if self.cameras is not None else {},
            "mqtt_connected": self._source.connected,
        }

    # ----------------------------------------------------------------- the loop

    def _enqueue(self, message: InboundMessage) -> None:
        self._queue.put(message)

    def _loop(self) -> None:
        next_tick = time.monotonic() + self.options.tick_interval
        while not self._stop.is_set():
            try:
                wait = max(0.0, min(next_tick - time.monotonic(), IDLE_WAIT))
                burst = self._take_burst(wait)
                if burst:
                    self._process(burst)
                self._release_telemetry_acks()
                if not self._pending.empty():
                    self._flush(retry_events=time.monotonic() >= self._retry_at)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.options.tick_interval
                    self._tick()
            except Exception:  # the runner thread must survive anything one burst does
                self.metrics.inc("runner_errors")
                log.exception("edge runner: unexpected error in a burst; continuing")
                self._stop.wait(self.options.held_retry)
        if not self._pending.empty():
            try:
                self._flush()
            except StoreError:
                log.exception("could not write the last burst at stop; the broker redelivers it")

    def _take_burst(self, wait: float) -> list[InboundMessage]:
        burst = self._queue.take(self.options.burst_max, wait)
        if burst and not self._first_message_at:
            self._first_message_at = burst[0].received or time.time()
        return burst

    def _process(self, burst: list[InboundMessage]) -> None:
        """Validate and analyse one burst; stage its events, dead letters, acks, readings.

        Per message only what must be: the camera frame test (only when cameras run), the
        validation and the detectors; counters are added once per burst. The readings go
        to the telemetry writer thread; the burst's acks wait until they are written or
        spooled (:meth:`_release_telemetry_acks`), so an acknowledged reading is never lost.
        """
        m = self.metrics
        n = len(burst)
        m.inc("messages_received", float(n))
        second = int(time.monotonic())
        if self._ingest and self._ingest[-1][0] == second:
            self._ingest[-1][1] += n
        else:
            self._ingest.append([second, n])
        self._release_telemetry_acks()
        readings: list[Reading] = []
        events: list[Event] = []
        letters: list[tuple[str, str, str, bytes]] = []
        validate = self.validator.validate
        observe = self.detection.observe
        cameras = self.cameras
        frame_suffix = "/" + FRAME_CHANNEL
        frames = statuses = natives = 0
        rejects: dict[str, int] = {}
        for msg in burst:
            topic = msg.topic
            if cameras is not None and topic.endswith(frame_suffix):
                parts = topic.split("/")
                if (
                    len(parts) == 5 and parts[1] == self.site.site_id and parts[2] == "camera"
                    and cameras.feed_frame(parts[3], msg.payload, msg.received)
                ):
                    frames += 1
                    continue
            result = validate(topic, msg.payload)
            if isinstance(result, Reading):  # by far the most frequent: tested first
                readings.append(result)
                found = observe(result)
                if found:
                    events.extend(found)
            elif isinstance(result, Rejection):
                reason = result.reason.value
                rejects[reason] = rejects.get(reason, 0) + 1
                letters.append((topic, reason, result.detail, msg.payload))
            elif isinstance(result, StatusChange):
                statuses += 1
                events.extend(self.detection.status(result))
            elif isinstance(result, NativeEvent):
                natives += 1
                events.extend(self.detection.native(result))
        if frames:
            m.inc("camera_frames", float(frames))
        for reason, count in rejects.items():
            m.inc("rejects", float(count), reason=reason)
        if statuses:
            m.inc("status_changes", float(statuses))
        if natives:
            m.inc("native_events", float(natives))
        m.inc("readings", float(len(readings)))
        self._stage_events(events)
        if letters:
            self._keep_letters(letters)
        writer = self._telemetry
        if writer is None:
            self._pending.acks.extend(burst)
            return
        seq = writer.submit(readings) if readings else writer.submitted
        if seq > writer.done or self._telemetry_acks:
            self._telemetry_acks.append((seq, burst))
        else:
            self._pending.acks.extend(burst)

    def _release_telemetry_acks(self) -> None:
        """Move the acks of bursts whose readings are written or spooled to the pending acks
        (sent with the next flush, once the events are durable too)."""
        waiting = self._telemetry_acks
        if waiting and self._telemetry is not None:
            done = self._telemetry.done
            while waiting and waiting[0][0] <= done:
                self._pending.acks.extend(waiting.popleft()[1])

    def _stage_events(self, events: Iterable[Event]) -> None:
        """Hold events for the next commit, each with the episode-registry change it causes
        (committed in the same transaction, so a crash cannot separate them)."""
        changes = self.detection.take_episode_changes()
        events = list(events)
        self._pending.points.extend(events)
        for event in events:
            entry = outbox_entry(event)
            change = changes.get(event.event_id)
            if change is not None:
                entry = replace(entry, episode=change)
            (self._pending.critical if entry.lane == CRITICAL else self._pending.events).append(
                entry
            )
            self.metrics.inc("events", lane=entry.lane, source="detect")

    def _tick(self) -> None:
        self._stage_events(self.detection.tick(self._clock()))
        if not self._pending.empty():
            self._flush(retry_events=time.monotonic() >= self._retry_at)
        self._check_disk()
        every = self.options.release_memory_every
        if every is not None and time.monotonic() >= self._release_at:
            self._release_at = time.monotonic() + every
            started = time.perf_counter()
            if release_free():
                self.metrics.inc("allocator_releases")
            self.metrics.inc("allocator_release_seconds", time.perf_counter() - started)

    def _flush(self, *, retry_events: bool = True) -> bool:
        """Make pending events durable (critical first), then ack; ``True`` when all done.

        Critical events are always attempted (they may take the reserve). After a full
        disk, other events are retried only every ``held_retry`` seconds and only once free
        space is back above the low-water mark plus the reserve, so they never eat the
        room kept for alarms. Acks wait until every pending event is durable.
        """
        p = self._pending
        with self._store_lock:
            if p.critical:
                try:
                    self._put(p.critical, critical=True)
                    p.critical = []
                except StoreFull:
                    self.metrics.inc("critical_held")
            if p.events and retry_events:
                try:
                    if not self._room_for_events():
                        raise StoreFull("waiting for free space above the low-water mark")
                    self._put(p.events, critical=False)
                    p.events = []
                except StoreFull:
                    self._retry_at = time.monotonic() + self.options.held_retry
            if p.critical or p.events:
                return False
        if p.points:
            self.forwarder.wake()
        acks, p.acks = p.acks, []
        ack_many = getattr(self._source, "ack_many", None)
        sent = ack_many(acks) if ack_many is not None else sum(
            1 for msg in acks if self._source.ack(msg)
        )
        self.metrics.inc("mqtt_acks", float(sent))
        if sent:
            self._last_ack_at = time.time()
        points, p.points = p.points, []
        if points:
            self._write_event_points(points)
        return True

    def _write_event_points(self, events: list[Event]) -> None:
        """Mirror durable events into outputs that chart them (Grafana's alarm panels), on
        the telemetry writer thread. Best effort: the outbox, not this copy, is what
        delivers events to the cloud."""
        if self._telemetry is not None:
            self._telemetry.submit_events(events)

    def _write_event_points_now(self, events: list[Event]) -> None:
        """:meth:`_write_event_points`, on the telemetry writer thread."""
        for name, output in self._outputs.items():
            write_events = getattr(output, "write_events", None)
            if write_events is None:
                continue
            try:
                write_events(events)
                self.metrics.inc("event_points_written", float(len(events)), output=name)
            except Exception as exc:  # a chart copy must never stall ingest: count, go on
                self.metrics.inc("event_points_failed", float(len(events)), output=name)
                log.debug("output %s could not take %d event points: %s", name, len(events), exc)

    def _room_for_events(self) -> bool:
        if not self._store_full:
            return True
        owed = 0 if self.guard.reserve_held else self.guard.reserve_bytes
        return self.guard.free() >= self.guard.low_water_bytes + owed

    def _put(self, entries: list[Entry], *, critical: bool) -> int:
        """Write entries; on a full disk free room (critical: the reserve) and try again.

        Raises :class:`StoreFull` when it still does not fit (the caller holds the entries).
        """
        try:
            new = self.outbox.put_many(entries)
        except StoreFull as exc:
            self._on_store_full(exc)
            freed = self._make_room(critical=critical)
            if not freed:
                raise
            try:
                new = self.outbox.put_many(entries)
            except StoreFull:
                self.metrics.inc("store_full_writes", lane=CRITICAL if critical else EVENTS)
                raise
        return new

    def _make_room(self, *, critical: bool) -> bool:
        freed = False
        if self.outbox.depth(TELEMETRY):
            with contextlib.suppress(StoreError):
                evicted = self.outbox.shrink(TELEMETRY, 0)
                self.metrics.inc("telemetry_evicted_disk_full", float(evicted))
                freed = evicted > 0
        if critical and self.guard.release_reserve():
            self.metrics.inc("reserve_releases")
            log.error("disk full: released the %d-byte reserve for critical events",
                      self.guard.reserve_bytes)
            freed = True
        return freed

    def _on_store_full(self, exc: StoreFull) -> None:
        if not self._store_full:
            log.error("outbox write failed, disk full (%s); degraded until space returns", exc)
        self._store_full = True
        self.metrics.inc("store_full")

    def _check_disk(self) -> None:
        """Leave degraded mode by itself once space is back (and restore the reserve)."""
        if self.guard.low():
            return
        if self._store_full and self._pending.empty():
            self._store_full = False
            log.warning("disk space is back; leaving degraded mode")
        if not self.guard.reserve_held:
            self.guard.ensure_reserve()

    def _keep_letters(self, letters: list[tuple[str, str, str, bytes]]) -> None:
        try:
            self.deadletters.add_many(letters)
        except StoreError as exc:
            self.metrics.inc("deadletters_dropped", float(len(letters)))
            if isinstance(exc, StoreFull):
                self._on_store_full(exc)
            else:
                log.error("dead letters not kept: %s", exc)

    # ----------------------------------------------------------------- telemetry
    # Everything in this section runs on the telemetry writer thread (self._telemetry),
    # one call at a time: writes in burst order, the spool, its replay and the backoff.

    def _stop_telemetry(self, timeout: float) -> None:
        """Write the bursts still queued, then send the acks they release (the runner thread
        has ended; if it has not, its own flush sends them, or the broker redelivers)."""
        if self._telemetry is None:
            return
        self._telemetry.stop(timeout)
        if any(t.is_alive() for t in self._threads if t.name == "edge-runner"):
            return
        self._release_telemetry_acks()
        if not self._pending.empty():
            try:
                self._flush()
            except StoreError:
                log.exception("could not write the last burst at stop; the broker redelivers it")

    def _telemetry_idle(self) -> None:
        """Replay the spool when there is one (about once per tick)."""
        if self.outbox.depth(TELEMETRY):
            self._replay_telemetry()

    def _write_telemetry(self, readings: list[Reading]) -> None:
        spooling = self.outbox.depth(TELEMETRY) > 0
        for name, output in self._outputs.items():
            if spooling:
                self._spool(name, readings)
                continue
            try:
                output.write(readings)
            except Exception as exc:  # an output's failure is data for the spool, not a crash
                self._output_failed(name, exc)
                unwritten = getattr(exc, "unwritten", None)
                rest = (
                    [r for r in unwritten if isinstance(r, Reading)]
                    if isinstance(unwritten, Sequence) and unwritten
                    else readings
                )
                self._spool(name, rest)

    def _output_failed(self, name: str, exc: Exception) -> None:
        self.metrics.inc("output_failures", output=name)
        delay = self._telemetry_backoff.next_delay()
        self._telemetry_retry_at = time.monotonic() + delay
        if self._telemetry_backoff.failures == 1:
            log.warning("output %s failed (%s); spooling telemetry, retry in %.1fs",
                        name, exc, delay)

    def _spool(self, name: str, readings: list[Reading]) -> None:
        if not readings:
            return
        payload = _encode_readings(name, readings)
        key = f"{name}:{readings[0].ts:.3f}:{hashlib.sha1(payload).hexdigest()[:16]}"
        if self._store_full or self.guard.low():
            self.metrics.inc("telemetry_dropped", float(len(readings)), reason="disk_full")
            return
        try:
            self.outbox.put_many([Entry(TELEMETRY, key, payload, items=len(readings))])
        except StoreError as exc:
            self.metrics.inc("telemetry_dropped", float(len(readings)), reason="store")
            if isinstance(exc, StoreFull):
                self._on_store_full(exc)
            return
        self.metrics.inc("telemetry_spooled", float(len(readings)))

    def _replay_telemetry(self, budget_s: float = 0.3, max_readings: int = 5000) -> None:
        """Write spooled readings back, oldest first, for at most ``budget_s`` per tick.

        Consecutive spooled bursts of one output are merged into writes of up to
        ``max_readings``, so the spool drains faster than a busy site refills it.
        """
        if time.monotonic() < self._telemetry_retry_at:
            return
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            items = self.outbox.peek(TELEMETRY, 200)
            if not items:
                break
            name: str | None = None
            batch: list[Reading] = []
            keys: list[str] = []
            for item in items:
                try:
                    row_name, readings = _decode_readings(self.site.site_id, item.payload)
                except (ValueError, KeyError, TypeError):
                    self.metrics.inc("telemetry_dropped", float(item.items), reason="corrupt")
                    self.outbox.ack(TELEMETRY, [item.key])
                    continue
                if name is None:
                    name = row_name
                if row_name != name or (batch and len(batch) + len(readings) > max_readings):
                    break
                batch.extend(readings)
                keys.append(item.key)
            if name is None:
                continue
            output = self._outputs.get(name)
            if output is None:
                self.metrics.inc("telemetry_dropped", float(len(batch)), reason="no_output")
            else:
                try:
                    output.write(batch)
                except Exception as exc:  # stays spooled; retried after the backoff
                    self._output_failed(name, exc)
                    return
                self.metrics.inc("telemetry_replayed", float(len(batch)))
            self.outbox.ack(TELEMETRY, keys)
        self._telemetry_backoff.reset()

    # ----------------------------------------------------------------- metrics

    def _gauges(self) -> Iterable[Sample]:
        for lane in self.outbox.lanes:
            yield "outbox_depth", {"lane": lane}, float(self.outbox.depth(lane))
            yield "outbox_bytes", {"lane": lane}, float(self.outbox.size_bytes(lane))
            age = self.outbox.oldest_age(lane)
            yield "outbox_oldest_age_seconds", {"lane": lane}, 0.0 if age is None else age
            yield "outbox_evicted_items", {"lane": lane}, float(self.outbox.evictions(lane))
        health = self.health()
        yield "degraded", {}, 0.0 if health["status"] == "ok" else 1.0
        for reason in ("store_full", "disk_low", "reserve_used", "mqtt_disconnected",
                       "cloud_unreachable"):
            yield "degraded_reason", {"reason": reason}, float(reason in health["reasons"])
        yield "disk_free_bytes", {}, float(health["disk_free_bytes"])
        yield "queue_depth", {}, float(self._queue.qsize())
        yield "ingest_rate", {}, self._ingest_rate()
        yield "first_message_timestamp_seconds", {}, self._first_message_at
        yield "last_ack_timestamp_seconds", {}, self._last_ack_at

    def _ingest_rate(self, window: int = 10) -> float:
        """Messages per second over the last ``window`` seconds."""
        now = int(time.monotonic())
        total = sum(n for t, n in list(self._ingest) if now - t < window)
        return total / window


def _encode_readings(output: str, readings: Sequence[Reading]) -> bytes:
    rows = [[r.kind, r.device_id, r.ts, r.values] for r in readings]
    return json.dumps({"output": output, "readings": rows}, separators=(",", ":")).encode()


def _decode_readings(site_id: str, payload: bytes) -> tuple[str, list[Reading]]:
    data = json.loads(payload)
    readings = [
        Reading(site_id=site_id, kind=k, device_id=d, ts=float(ts), values=dict(v))
        for k, d, ts, v in data["readings"]
    ]
    return str(data["output"]), readings
