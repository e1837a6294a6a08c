"""The camera service of the edge agent: one worker thread per camera, alarms as events.

Each camera of the site config names its ``source`` in ``params``: a file path, an
``rtsp://`` (or ``http://``) URL read with OpenCV, or ``mqtt`` for JPEG frames the agent's
MQTT input pushes through :meth:`CameraService.feed_frame` (topic
``gh/{site}/camera/{device_id}/frame``). ``params.calibration`` holds the floor lines,
masks and facade region (see :class:`~edge.camera.calibration.Calibration`); ``params.fps``
the frame rate when the source does not tell (default 25).

A lost stream is reopened with exponential backoff (``reconnect_initial`` doubling up to
``reconnect_max``) and counted. A file source ends at its end unless ``params.loop`` is set;
``params.realtime`` (default true for files) paces it at its frame rate.

Every alarm becomes a ``camera.object_thrown`` event (critical) whose ``event_id`` is derived
from the device, the type and the release time taken from the stream's timestamps (so a
replay yields the same id), with evidence: floor, release column ``x``, ``window_column``,
``trajectory`` ([frame, x, y] in full-resolution pixels) and ``snapshot``, the path, relative
to ``evidence_dir``, of a JPEG with the track drawn and faces blurred.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from device_profiles.messages import Event, make_event_id
from device_profiles.site import DeviceConfig
from edge.camera.calibration import Calibration, CalibrationError
from edge.camera.detector import Alarm, DetectorParams, ThrowDetector, processing_scale
from edge.camera.sources import (
    CaptureFactory,
    FrameQueue,
    JpegFrame,
    decode_jpeg,
    jpeg_size,
    opencv_capture,
)

log = logging.getLogger(__name__)

EVENT_TYPE = "camera.object_thrown"


class CameraConfigError(ValueError):
    """A camera's params are missing or invalid; the message names the device and field."""


@dataclass(slots=True)
class CameraStats:
    """Counters of one camera (all monotonic except ``state`` and ``fps``)."""

    state: str = "idle"
    frames: int = 0
    fps: float = 0.0
    reconnects: int = 0
    open_failures: int = 0
    frame_drops: int = 0
    decode_errors: int = 0
    alarms: int = 0
    errors: int = 0
    disturbed_frames: int = 0
    rejected_tracks: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state, "frames": self.frames, "fps": round(self.fps, 2),
            "reconnects": self.reconnects, "open_failures": self.open_failures,
            "frame_drops": self.frame_drops, "decode_errors": self.decode_errors,
            "alarms": self.alarms, "errors": self.errors,
            "disturbed_frames": self.disturbed_frames,
            "rejected_tracks": dict(self.rejected_tracks),
        }


@dataclass(frozen=True, slots=True)
class CameraSpec:
    device_id: str
    source: str
    calibration: Calibration
    fps: float
    loop: bool
    realtime: bool
    start_ts: float | None

    @classmethod
    def from_device(cls, dev: DeviceConfig) -> CameraSpec:
        where = f"camera {dev.id}"
        if dev.kind != "camera":
            raise CameraConfigError(f"{where}: kind is {dev.kind!r}, not camera")
        p = dev.params
        source = p.get("source")
        if not isinstance(source, str) or not source:
            raise CameraConfigError(
                f"{where}: params.source must be a file path, an rtsp:// URL or 'mqtt'")
        try:
            cal = Calibration.from_dict(p.get("calibration"))
        except CalibrationError as exc:
            raise CameraConfigError(f"{where}: params.calibration: {exc}") from exc
        fps = p.get("fps", 25.0)
        if not isinstance(fps, int | float) or not 1 <= fps <= 240:
            raise CameraConfigError(f"{where}: params.fps must be a number in 1..240")
        is_file = source != "mqtt" and "://" not in source
        start = p.get("start_ts")
        if start is not None and not isinstance(start, int | float):
            raise CameraConfigError(f"{where}: params.start_ts must be epoch seconds")
        return cls(dev.id, source, cal, float(fps), bool(p.get("loop", False)),
                   bool(p.get("realtime", is_file)),
                   float(start) if start is not None else None)


class _Camera:
    """Detection state of one camera, shared by its source loop."""

    def __init__(self, spec: CameraSpec, service: CameraService) -> None:
        self.spec = spec
        self.svc = service
        self.stats = CameraStats()
        self.det: ThrowDetector | None = None
        self.index = 0
        self.ts_of: deque[tuple[int, float]] = deque(maxlen=400)
        self.queue = FrameQueue() if spec.source == "mqtt" else None
        self.thread: threading.Thread | None = None
        self._rate_t0 = time.monotonic()
        self._rate_n = 0

    def detector(self, width: int, height: int, fps: float) -> ThrowDetector:
        if self.det is None or (self.det.width, self.det.height) != (width, height):
            self.det = ThrowDetector(self.spec.calibration, fps, width, height,
                                     self.svc.params)
        return self.det

    def restart_stream(self) -> None:
        """A new stream (reconnect): the background and tracks start over."""
        self.det = None

    def process(self, proc: npt.NDArray[np.uint8], ts: float,
                colour: Callable[[], npt.NDArray[np.uint8] | None]) -> None:
        det = self.det
        assert det is not None
        self.ts_of.append((self.index, ts))
        alarms = det.feed(proc, self.index)
        self.index += 1
        self.stats.frames += 1
        self._rate_n += 1
        now = time.monotonic()
        if now - self._rate_t0 >= 2.0:
            self.stats.fps = self._rate_n / (now - self._rate_t0)
            self._rate_t0, self._rate_n = now, 0
        self.stats.disturbed_frames = det.motion.disturbed_frames
        self.stats.rejected_tracks = dict(det.rejections)
        if alarms:
            frame = colour()
            for alarm in alarms:
                self.svc._raise(self, alarm, ts, frame)

    def ts_at(self, frame: int) -> float:
        """Timestamp of frame ``frame`` (extrapolated at the frame rate outside the buffer)."""
        if not self.ts_of:
            return 0.0
        fps = self.det.fps if self.det else self.spec.fps
        for idx, ts in reversed(self.ts_of):
            if idx <= frame:
                return ts + (frame - idx) / fps
        idx, ts = self.ts_of[0]
        return ts + (frame - idx) / fps


class CameraService:
    """Runs thrown-object detection for the site's cameras and emits events.

    ``emit`` is called from the camera worker threads; it must be thread-safe and quick
    (the agent's outbox append is).
    """

    def __init__(
        self,
        site_id: str,
        gateway_id: str,
        cameras: list[DeviceConfig],
        evidence_dir: Path,
        emit: Callable[[Event], None],
        *,
        capture_factory: CaptureFactory = opencv_capture,
        params: DetectorParams | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        clock: Callable[[], float] = time.time,
        face_model: str | None = None,
    ) -> None:
        if reconnect_initial <= 0 or reconnect_max < reconnect_initial:
            raise ValueError("need 0 < reconnect_initial <= reconnect_max")
        self.site_id, self.gateway_id = site_id, gateway_id
        self.evidence_dir = Path(evidence_dir)
        self._emit = emit
        self._factory = capture_factory
        self.params = params or DetectorParams()
        self._backoff = (reconnect_initial, reconnect_max)
        self._clock = clock
        self._stop = threading.Event()
        from edge.camera.evidence import FaceBlurrer

        self._blurrer = FaceBlurrer(face_model)
        self._cams: dict[str, _Camera] = {}
        for dev in cameras:
            spec = CameraSpec.from_device(dev)
            self._cams[spec.device_id] = _Camera(spec, self)

    # lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start one worker thread per camera (idempotent)."""
        self._stop.clear()
        for cam in self._cams.values():
            if cam.thread is not None and cam.thread.is_alive():
                continue
            target = self._run_mqtt if cam.queue is not None else self._run_capture
            cam.thread = threading.Thread(target=target, args=(cam,), daemon=True,
                                          name=f"camera-{cam.spec.device_id}")
            cam.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop all workers and wait for them (frames still queued are discarded)."""
        self._stop.set()
        for cam in self._cams.values():
            if cam.queue is not None:
                cam.queue.put(None)
        for cam in self._cams.values():
            if cam.thread is not None:
                cam.thread.join(timeout)
            cam.stats.state = "stopped"

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-camera counters (also the camera profile's health fields: fps, frame_drops,
        reconnects)."""
        out = {}
        for dev, cam in self._cams.items():
            if cam.queue is not None:
                cam.stats.frame_drops = cam.queue.dropped
            out[dev] = cam.stats.as_dict()
        return out

    def join(self, timeout: float | None = None) -> None:
        """Wait for the workers to end (file sources end at the end of the file)."""
        for cam in self._cams.values():
            if cam.thread is not None:
                cam.thread.join(timeout)

    # MQTT input ------------------------------------------------------------------------
    def feed_frame(self, device_id: str, jpeg: bytes, ts: float) -> bool:
        """Hand one JPEG frame of an ``mqtt`` camera to its worker; False if the device is
        not an MQTT camera of this service (the caller counts that as a rejection)."""
        cam = self._cams.get(device_id)
        if cam is None or cam.queue is None:
            return False
        cam.queue.put(JpegFrame(jpeg, ts))
        return True

    def _run_mqtt(self, cam: _Camera) -> None:
        import cv2

        cam.stats.state = "running"
        assert cam.queue is not None
        while not self._stop.is_set():
            item = cam.queue.get(timeout=0.5)
            if item is None:
                continue
            try:
                if cam.det is None:
                    size = jpeg_size(item.data)
                    if size is None:
                        cam.stats.decode_errors += 1
                        continue
                    cam.detector(size[0], size[1], cam.spec.fps)
                det = cam.det
                assert det is not None
                proc = decode_jpeg(item.data, det.factor)
                want = (det.height // det.factor, det.width // det.factor)
                if proc is None or proc.shape[0] < want[0] or proc.shape[1] < want[1]:
                    cam.stats.decode_errors += 1
                    continue
                proc = np.ascontiguousarray(proc[: want[0], : want[1]])
                data = item.data

                def colour(data: bytes = data) -> npt.NDArray[np.uint8] | None:
                    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                    return None if img is None else np.asarray(img, np.uint8)

                cam.process(proc, item.ts, colour)
            except Exception:
                cam.stats.errors += 1
                log.exception("camera %s: error processing an MQTT frame", cam.spec.device_id)

    # OpenCV captures -------------------------------------------------------------------
    def _run_capture(self, cam: _Camera) -> None:
        delay = self._backoff[0]
        first = True
        spec = cam.spec
        while not self._stop.is_set():
            if not first:
                cam.stats.reconnects += 1
            first = False
            cam.stats.state = "connecting"
            try:
                got_frames, ended = self._read_stream(cam)
            except Exception:
                cam.stats.errors += 1
                log.exception("camera %s: stream %s failed", spec.device_id, spec.source)
                got_frames, ended = False, False
            if ended and not spec.loop:
                cam.stats.state = "ended"
                return
            if got_frames:
                delay = self._backoff[0]
            cam.stats.state = "waiting"
            log.warning("camera %s: stream lost, reconnecting in %.1f s", spec.device_id,
                        delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self._backoff[1])
        cam.stats.state = "stopped"

    def _read_stream(self, cam: _Camera) -> tuple[bool, bool]:
        """Read one connection of the stream. Returns (got any frame, ended cleanly at the
        end of a file)."""
        import cv2

        spec = cam.spec
        cap = self._factory(spec.source)
        try:
            if not cap.isOpened():
                cam.stats.open_failures += 1
                return False, False
            cam.stats.state = "running"
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or spec.fps
            if not 1 <= fps <= 240:
                fps = spec.fps
            cam.restart_stream()
            is_file = spec.source != "mqtt" and "://" not in spec.source
            start = spec.start_ts if spec.start_ts is not None else self._clock()
            wall0 = time.monotonic()
            n = 0
            last: npt.NDArray[np.uint8] | None = None
            while not self._stop.is_set():
                ok, frame = cap.read()
                if not ok or frame is None:
                    if n and is_file:
                        alarms_end = cam.det.finish(cam.index) if cam.det else []
                        for alarm in alarms_end:
                            self._raise(cam, alarm, cam.ts_at(cam.index), last)
                    return n > 0, is_file and n > 0
                img = np.asarray(frame, np.uint8)
                last = img
                h, w = img.shape[:2]
                det = cam.detector(w, h, fps)
                ts = start + n / fps if is_file else self._clock()
                cam.process(det.prepare(img), ts, _constant(img))
                n += 1
                if spec.realtime and is_file:
                    ahead = wall0 + n / fps - time.monotonic()
                    if ahead > 0 and self._stop.wait(ahead):
                        break
            return n > 0, False
        finally:
            cap.release()

    # alarms ----------------------------------------------------------------------------
    def _raise(self, cam: _Camera, alarm: Alarm, ts: float,
               frame: npt.NDArray[np.uint8] | None) -> None:
        from edge.camera.evidence import save_evidence

        dev = cam.spec.device_id
        release_ts = cam.ts_at(alarm.release_frame)
        event_id = make_event_id(self.site_id, dev, EVENT_TYPE, release_ts, "raised")
        snapshot: str | None = f"{dev}/{event_id}.jpg"
        if frame is not None and snapshot is not None:
            try:
                save_evidence(frame, alarm, self.evidence_dir, snapshot, self._blurrer)
            except OSError:
                cam.stats.errors += 1
                log.exception("camera %s: cannot store evidence %s", dev, snapshot)
                snapshot = None
        else:
            snapshot = None
        event = Event(
            event_id=event_id,
            site_id=self.site_id,
            gateway_id=self.gateway_id,
            device_id=dev,
            kind="camera",
            type=EVENT_TYPE,
            severity="critical",
            state="raised",
            ts=max(0.0, ts),
            evidence={
                "floor": alarm.floor,
                "x": round(alarm.x, 1),
                "window_column": alarm.window_column,
                "trajectory": [list(p) for p in alarm.trajectory],
                "snapshot": snapshot,
                "release_ts": round(release_ts, 3),
                "release_frame": alarm.release_frame,
                "frame": alarm.frame,
                "size_px": round(alarm.size_px, 1),
            },
        )
        cam.stats.alarms += 1
        self._emit(event)


def _constant(
    img: npt.NDArray[np.uint8],
) -> Callable[[], npt.NDArray[np.uint8] | None]:
    return lambda: img


def processing_factor(width: int, params: DetectorParams | None = None) -> int:
    """Downscale factor the detector will use for frames ``width`` pixels wide."""
    return processing_scale(width, (params or DetectorParams()).target_width)
