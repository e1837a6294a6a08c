"""Publish a simulated estate over MQTT: one client, one loop, thousands of messages a second.

Every device's model is stepped on its own schedule (its profile's sampling period, with a
stable per-device phase) from a heap; the loop publishes everything that is due and then
waits for the next due time, never sleeping per message. Simulated time runs ``speed``
times faster than the wall clock and starts at ``start_ts`` (default: now), so with
``speed=1`` timestamps are the wall clock.

Topics follow the contract: ``gh/{site}/{kind}/{device}/telemetry`` (compact JSON with
``ts`` and the fields), ``.../status`` (retained ``online`` after every connection,
``offline`` when an offline fault silences the device and on a clean stop) and
``.../event`` (device-native events). Faults are scheduled up front, at random, or on
demand through ``gh/{site}/_sim/inject``; each is written to the ground truth when
scheduled.
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from device_profiles.messages import TOPIC_PREFIX, telemetry_topic
from device_profiles.site import DeviceConfig, SiteConfig
from simulators.models import (
    FAULT_TYPES,
    DeviceModel,
    FaultError,
    FaultSpec,
    default_duration,
    make_model,
)
from simulators.models.offline import phase_offset
from simulators.mqtt_client import BrokerError, MqttLink, parse_broker_url
from simulators.truth import GroundTruth

log = logging.getLogger("gatehouse.simulate")

COMMON_AREA_FAULTS = ("meter.night_base_load", "meter.phase_imbalance")
"""Put on common-area meters by the random plan: the detectors watch night load there only,
and phase imbalance only above a minimum current that dwellings rarely reach."""

BULK_STATUS_QOS = 0
"""QoS of the retained status of every device at (re)connection and at stop. QoS 0: paho
rescans its whole outgoing queue on every acknowledgement, so thousands of QoS 1 messages
at once cost seconds; a retained QoS 0 message written before DISCONNECT still arrives."""

BATCH = 2000
"""Samples published per loop pass before checking the stop flag and the control topic."""


def inject_topic(site_id: str) -> str:
    """The on-demand fault injection topic of a site."""
    return f"{TOPIC_PREFIX}/{site_id}/_sim/inject"


def plan_random_faults(
    devices: list[DeviceConfig],
    count: int,
    horizon: float,
    rng: np.random.Generator,
) -> list[FaultSpec]:
    """``count`` faults on random devices and types, starting within ``horizon`` seconds.

    Times are relative to the run start (offsets in seconds); trend ramps are shortened so
    the limit is crossed within the horizon.
    """
    from simulators.models import MODELS

    if count <= 0 or not devices:
        return []
    out: list[FaultSpec] = []
    for _ in range(count):
        device = devices[int(rng.integers(len(devices)))]
        types = FAULT_TYPES[device.kind]
        fault_type = types[int(rng.integers(len(types)))]
        if fault_type in COMMON_AREA_FAULTS and not device.params.get("common_area"):
            common = [d for d in devices if d.params.get("common_area")]
            if common:
                device = common[int(rng.integers(len(common)))]
        model = MODELS[device.kind]
        start = float(rng.uniform(0.05, 0.5)) * horizon
        params: dict[str, Any] = {}
        if fault_type in model.trend_limits:
            params["ramp"] = round(0.6 * (horizon - start), 3)
        duration = min(default_duration(model, fault_type, params), horizon - start)
        out.append(
            FaultSpec(device.id, fault_type, round(start, 3), round(start + duration, 3), params)
        )
    return out


class EstatePublisher:
    """The estate of ``site`` published to ``broker_url`` from a background thread.

    ``faults`` are absolute (epoch seconds of simulated time); ``random_faults`` adds that
    many random ones within the first ``random_horizon`` simulated seconds. Construction
    validates everything (bad URL, speed, QoS, fault for an unknown device or of the wrong
    kind all raise); :meth:`start` connects (raising :class:`BrokerError` if it cannot) and
    starts the loop; :meth:`stop` publishes ``offline`` for every device and disconnects.
    """

    def __init__(
        self,
        site: SiteConfig,
        broker_url: str,
        *,
        seed: int = 0,
        speed: float = 1.0,
        faults: Iterable[FaultSpec] = (),
        truth_path: Path | str | None = None,
        random_faults: int = 0,
        random_horizon: float = 3600.0,
        duration: float = 0.0,
        start_ts: float | None = None,
        qos: int = 0,
        rate_limit: float | None = None,
        protocol: str | None = None,
        devices: list[DeviceConfig] | None = None,
    ) -> None:
        parse_broker_url(broker_url)
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be positive messages/s, got {rate_limit}")
        if duration < 0:
            raise ValueError(f"duration must not be negative, got {duration}")
        self.site = site
        self.broker_url = broker_url
        self.seed = seed
        self.speed = float(speed)
        self.duration = float(duration)
        self.qos = qos
        self.rate_limit = rate_limit
        self.protocol = protocol or site.mqtt.protocol
        self.truth_path = Path(truth_path) if truth_path is not None else None
        self.start_ts = start_ts
        self.devices = list(devices) if devices is not None else site.all_devices()
        floors = site.estate.floors if site.estate is not None else None
        self.models: list[DeviceModel] = [make_model(d, seed, floors=floors) for d in self.devices]
        self._index = {d.id: i for i, d in enumerate(self.devices)}
        self._topics = [
            (
                telemetry_topic(site.site_id, d.kind, d.id),
                telemetry_topic(site.site_id, d.kind, d.id, "status"),
                telemetry_topic(site.site_id, d.kind, d.id, "event"),
            )
            for d in self.devices
        ]
        self._pending: list[FaultSpec] = []
        for spec in faults:
            self._check_fault(spec)
            self._pending.append(spec)
        self._relative = plan_random_faults(
            self.devices, random_faults, random_horizon, np.random.default_rng(seed)
        )
        self._inbox: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: MqttLink | None = None
        self._truth: GroundTruth | None = None
        self._silent = [False] * len(self.devices)
        self._lock = threading.Lock()
        self._stats: dict[str, float] = {
            "devices": float(len(self.devices)),
            "samples": 0.0,
            "telemetry_published": 0.0,
            "events_published": 0.0,
            "status_published": 0.0,
            "publish_failed": 0.0,
            "faults_injected": 0.0,
            "injections_rejected": 0.0,
            "errors": 0.0,
            "lag_s": 0.0,
            "sim_time": 0.0,
            "elapsed_s": 0.0,
        }
        self._sim_start = 0.0
        self._wall_start = 0.0
        self._wall_end: float | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def sim_start(self) -> float:
        """Simulated epoch seconds at which the run started (valid after :meth:`start`)."""
        return self._sim_start

    def sim_now(self) -> float:
        """The current simulated time."""
        return self._sim_start + (time.monotonic() - self._wall_start) * self.speed

    def start(self) -> None:
        """Connect, schedule the faults, publish ``online`` for every device, start the loop."""
        if self._thread is not None:
            raise RuntimeError("EstatePublisher already started")
        self._wall_start = time.monotonic()
        self._sim_start = self.start_ts if self.start_ts is not None else time.time()
        self._truth = GroundTruth(self.truth_path) if self.truth_path is not None else None
        for spec in self._pending:
            self._inject(spec)
        for rel in self._relative:
            self._inject(
                FaultSpec(
                    rel.device_id,
                    rel.type,
                    self._sim_start + rel.start,
                    self._sim_start + rel.end,
                    rel.params,
                )
            )
        try:
            link = MqttLink(
                self.broker_url,
                client_id_prefix=f"gatehouse-sim-{self.site.site_id}",
                protocol=self.protocol,
                on_connect=self._on_connect,
                on_message=self._on_message,
            )
            link.connect()
            self._link = link
        except BrokerError:
            if self._truth is not None:
                self._truth.close()
            raise
        self._thread = threading.Thread(target=self._run, name="estate-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, publish ``offline`` (retained) for every device, disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends by itself (``duration``); ``True`` if it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def inject(self, spec: FaultSpec) -> FaultSpec:
        """Schedule a fault now (thread-safe); return it completed. Raise :class:`FaultError`."""
        self._check_fault(spec)
        return self._inject(spec)

    def stats(self) -> dict[str, float]:
        """Counters of the run: samples, messages published by channel, failures, lag."""
        with self._lock:
            out = dict(self._stats)
        if self._thread is not None:
            end = self._wall_end if self._wall_end is not None else time.monotonic()
            out["elapsed_s"] = end - self._wall_start
            if out["elapsed_s"] > 0:
                out["telemetry_rate"] = out["telemetry_published"] / out["elapsed_s"]
        return out

    @property
    def truth(self) -> list[dict[str, Any]]:
        """The faults injected so far as truth records (dicts)."""
        if self._truth is None:
            return [f.to_dict() for m in self.models for f in m.faults]
        return [json.loads(r.to_json()) for r in self._truth.records]

    # -- internals ----------------------------------------------------------------------

    def _check_fault(self, spec: FaultSpec) -> None:
        index = self._index.get(spec.device_id)
        if index is None:
            raise FaultError(f"fault {spec.type}: unknown device {spec.device_id!r}")
        kind = self.devices[index].kind
        if spec.type not in FAULT_TYPES[kind]:
            raise FaultError(
                f"fault {spec.type} does not apply to {spec.device_id} (a {kind}); "
                f"expected one of {', '.join(FAULT_TYPES[kind])}"
            )

    def _inject(self, spec: FaultSpec) -> FaultSpec:
        index = self._index[spec.device_id]
        with self._lock:
            resolved = self.models[index].inject(spec)
            self._stats["faults_injected"] += 1
        if self._truth is not None:
            self._truth.record(resolved, self.devices[index].kind)
        log.info(
            "fault %s on %s from %.3f to %.3f %s",
            resolved.type,
            resolved.device_id,
            resolved.start,
            resolved.end,
            resolved.params,
        )
        return resolved

    def _count(self, key: str, n: float = 1.0) -> None:
        with self._lock:
            self._stats[key] += n

    def _on_connect(self, client: Any) -> None:
        site = self.site.site_id
        client.subscribe(inject_topic(site), qos=1)
        for i, (_, status_topic, _) in enumerate(self._topics):
            state = "offline" if self._silent[i] else "online"
            client.publish(status_topic, state, qos=BULK_STATUS_QOS, retain=True)
        self._count("status_published", len(self._topics))
        log.info("connected to %s; %d devices online", self.broker_url, len(self._topics))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._inbox.put(bytes(message.payload))

    def _drain_inbox(self, now: float) -> None:
        while True:
            try:
                payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                spec = parse_injection(payload, now, self.devices, self._index)
                self.inject(spec)
            except FaultError as exc:
                self._count("injections_rejected")
                log.warning("rejected injection %r: %s", payload[:200], exc)

    def _run(self) -> None:
        assert self._link is not None
        link = self._link
        client = link.client
        heap = [
            (self._sim_start + phase_offset(d.id, m.period), i)
            for i, (d, m) in enumerate(zip(self.devices, self.models, strict=True))
        ]
        heapq.heapify(heap)
        qos = self.qos
        tokens = 0.0
        last_refill = time.monotonic()
        published = 0
        try:
            while not self._stop.is_set():
                now = self.sim_now()
                self._drain_inbox(now)
                if self.duration and time.monotonic() - self._wall_start >= self.duration:
                    break
                budget = BATCH
                if self.rate_limit is not None:
                    mono = time.monotonic()
                    tokens = min(
                        self.rate_limit * 0.2, tokens + (mono - last_refill) * self.rate_limit
                    )
                    last_refill = mono
                    budget = min(budget, int(tokens))
                n = 0
                failed = events = telemetry = 0
                while n < budget and heap and heap[0][0] <= now:
                    ts, i = heap[0]
                    model = self.models[i]
                    heapq.heapreplace(heap, (ts + model.period, i))
                    n += 1
                    try:
                        with self._lock:  # inject() may add a fault from another thread
                            sample = model.step(ts)
                        topic, status_topic, event_topic = self._topics[i]
                        if sample.status is not None:
                            self._silent[i] = sample.status == "offline"
                            client.publish(status_topic, sample.status, qos=1, retain=True)
                            self._count("status_published")
                        if not sample.values:
                            continue
                        payload = {"ts": round(ts, 3)}
                        payload.update(sample.values)
                        info = client.publish(
                            topic, json.dumps(payload, separators=(",", ":")), qos
                        )
                        if info.rc:
                            failed += 1
                        else:
                            telemetry += 1
                        for event in sample.native_events:
                            client.publish(event_topic, json.dumps(event, separators=(",", ":")), 1)
                            events += 1
                    except Exception:
                        self._count("errors")
                        log.exception("device %s: step or publish failed", self.devices[i].id)
                published += n
                tokens -= n
                with self._lock:
                    s = self._stats
                    s["samples"] += n
                    s["telemetry_published"] += telemetry
                    s["events_published"] += events
                    s["publish_failed"] += failed
                    s["sim_time"] = now
                    s["lag_s"] = max(0.0, now - heap[0][0]) if heap else 0.0
                if n >= BATCH:
                    link.pump(0.0)
                    continue
                if self.rate_limit is not None and n >= budget and tokens < 1:
                    link.pump(max(0.001, (1 - tokens) / self.rate_limit))
                    continue
                due = heap[0][0] if heap else now + 0.1
                link.pump(min(0.1, max(0.0005, (due - now) / self.speed)))
        finally:
            self._shutdown(link)

    def _shutdown(self, link: MqttLink) -> None:
        self._wall_end = time.monotonic()
        info = None
        for _, status_topic, _ in self._topics:
            info = link.publish(status_topic, "offline", qos=BULK_STATUS_QOS, retain=True)
        self._count("status_published", len(self._topics))
        if not link.flush(info, timeout=10):
            log.warning("offline status of every device not confirmed by the broker")
        link.close()
        if self._truth is not None:
            self._truth.close()
        log.info("stopped after %s", self.stats())


def parse_injection(
    payload: bytes,
    now: float,
    devices: list[DeviceConfig],
    index: dict[str, int],
) -> FaultSpec:
    """An on-demand injection message -> a fault spec (:class:`FaultError` if invalid).

    JSON ``{"device_id", "type", "start"?, "delay"?, "end"?, "duration"?, "params"?}``:
    ``start``/``end`` are epoch seconds of simulated time; without them the fault starts
    ``delay`` (default 0) seconds from now and lasts ``duration`` (default: the type's).
    """
    from simulators.models import MODELS

    try:
        raw = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FaultError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise FaultError("an injection must be a JSON object")
    device_id = raw.get("device_id")
    fault_type = raw.get("type")
    if not isinstance(device_id, str) or not isinstance(fault_type, str):
        raise FaultError("an injection needs string 'device_id' and 'type'")
    if device_id not in index:
        raise FaultError(f"unknown device {device_id!r}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise FaultError("'params' must be an object")
    try:
        start = float(raw["start"]) if "start" in raw else now + float(raw.get("delay", 0.0))
        if "end" in raw:
            end = float(raw["end"])
        else:
            kind = devices[index[device_id]].kind
            dur = raw.get("duration")
            end = start + (
                float(dur)
                if dur is not None
                else default_duration(MODELS[kind], fault_type, params)
            )
    except (TypeError, ValueError) as exc:
        raise FaultError(f"bad time: {exc}") from exc
    return FaultSpec(device_id, fault_type, start, end, params)
