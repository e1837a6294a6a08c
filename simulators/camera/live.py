"""Live camera: render a clip and publish each frame as a JPEG over MQTT in real time.

This is what a networked facade camera looks like to the edge agent when its site config
says ``params.source: mqtt``: one JPEG per message on ``gh/{site}/camera/{device_id}/frame``
at the clip's frame rate. Frame ``i`` is due ``i / fps`` seconds after the first; the
publisher renders and encodes it, then waits for its due time by pumping the MQTT link
(so acknowledgements are read while waiting; there is no sleep per frame beyond that
pacing). A frame that is already late when ready is sent at once and counted in
``late_frames``; the schedule is never shifted, so a slow renderer shows up as lag, not as
a slower clip.

The ground truth of each throw is recorded with wall-clock times (the edge stamps MQTT
frames with their arrival time) as a :class:`simulators.truth.GroundTruth` line:
``device_id``, ``kind: "camera"``, ``type: "camera.object_thrown"``, ``start`` = release,
``end`` = impact (last frame in view), ``params`` = ``floor``, ``x`` (release column,
pixels), ``size_px``, ``release_frame``, ``impact_frame``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from simulators.models.base import FaultSpec
from simulators.truth import GroundTruth

THROWN_EVENT = "camera.object_thrown"


class LiveCameraError(RuntimeError):
    """A frame could not be encoded or the broker did not take the clip."""


class FrameLink(Protocol):
    """What the publisher needs of an MQTT link (:class:`simulators.mqtt_client.MqttLink`)."""

    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> Any:
        ...

    def pump(self, timeout: float = 0.0) -> None:
        ...

    def flush(self, last: Any = None, timeout: float = 10.0) -> bool:
        ...


def frame_topic(site_id: str, device_id: str) -> str:
    """The topic the edge agent reads a camera's JPEG frames from."""
    for name, value in (("site id", site_id), ("device id", device_id)):
        if not value or any(c in value for c in "/+#"):
            raise ValueError(f"{name} {value!r} must be non-empty without '/', '+' or '#'")
    return f"gh/{site_id}/camera/{device_id}/frame"


@dataclass(frozen=True, slots=True)
class LiveStats:
    """What a live run did: frames sent, bytes, lateness against the real-time schedule."""

    frames: int
    bytes: int
    seconds: float
    late_frames: int
    max_lag_s: float
    publish_failures: int
    throws: int
    flushed: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def encode_jpeg(frame: Any, quality: int) -> bytes:
    """JPEG bytes of a grey or BGR frame; :class:`LiveCameraError` if OpenCV refuses it."""
    import cv2

    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise LiveCameraError("OpenCV could not encode a frame as JPEG")
    return bytes(buf.tobytes())


class LiveCameraPublisher:
    """Publishes one rendered clip as paced JPEG frames and records its throws' truth.

    ``renderer`` is a :class:`simulators.camera.render.ClipRenderer` (anything with
    ``spec.fps``, ``frames()`` and ``meta()``). ``clock`` is monotonic seconds for pacing,
    ``wall`` epoch seconds for the truth; both are injectable so tests need no real time.
    """

    def __init__(
        self,
        renderer: Any,
        link: FrameLink,
        *,
        site_id: str,
        device_id: str,
        qos: int = 1,
        quality: int = 85,
        truth: GroundTruth | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {quality}")
        fps = float(renderer.spec.fps)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.topic = frame_topic(site_id, device_id)
        self.device_id = device_id
        self._renderer = renderer
        self._link = link
        self._qos = qos
        self._quality = quality
        self._truth = truth
        self._clock = clock
        self._wall = wall
        self._fps = fps

    def run(self, flush_timeout: float = 10.0) -> LiveStats:
        """Publish every frame on schedule, wait for the last acknowledgement, record truth.

        The truth is written even if publishing stops early (an interrupt), for the throws
        released before the last frame sent; an impact not yet rendered is the clip's end.
        """
        frames = sent_bytes = late = failures = 0
        max_lag = 0.0
        last: Any = None
        start = self._clock()
        start_wall = self._wall()
        flushed = False
        try:
            for i, frame in enumerate(self._renderer.frames()):
                payload = encode_jpeg(frame, self._quality)
                due = start + i / self._fps
                now = self._clock()
                while now < due:
                    self._link.pump(due - now)
                    now = self._clock()
                lag = now - due
                if lag > 0.5 / self._fps:
                    late += 1
                max_lag = max(max_lag, lag)
                info = self._link.publish(self.topic, payload, self._qos)
                if getattr(info, "rc", 0) != 0:
                    failures += 1
                last = info
                frames += 1
                sent_bytes += len(payload)
                self._link.pump(0.0)
            flushed = self._link.flush(last if self._qos > 0 else None, flush_timeout)
        finally:
            throws = self._record_truth(start_wall, frames)
        return LiveStats(frames, sent_bytes, round(self._clock() - start, 3), late,
                         round(max_lag, 4), failures, throws, flushed)

    def _record_truth(self, start_wall: float, frames_sent: int) -> int:
        meta = self._renderer.meta()
        count = 0
        for throw in meta.throws:
            if throw.release_frame >= frames_sent:
                continue
            count += 1
            if self._truth is None:
                continue
            impact = min(throw.impact_frame, max(frames_sent - 1, throw.release_frame))
            self._truth.record(
                FaultSpec(
                    self.device_id, THROWN_EVENT,
                    round(start_wall + throw.release_frame / self._fps, 3),
                    round(start_wall + impact / self._fps, 3),
                    {"floor": throw.floor, "x": round(throw.x, 1),
                     "size_px": round(throw.size_px, 1), "release_frame": throw.release_frame,
                     "impact_frame": impact},
                ),
                kind="camera",
            )
        return count


def calibration_json(renderer: Any) -> str:
    """The ``params.calibration`` a site file needs for this clip's camera, as JSON."""
    return json.dumps(renderer.meta().calibration.to_dict(), separators=(",", ":"))


def run_live(args: Any) -> int:
    """``gatehouse simulate camera --broker ...``: one clip, published live; JSON summary.

    With ``--print-calibration`` the calibration JSON is printed first (one line, before any
    frame), so an integrator can paste it into the site file; alone, nothing is published.
    Exit codes: 0 done, 1 broker refused or frames not acknowledged, 2 bad options.
    """
    import sys

    from simulators.camera.render import ClipRenderer, ClipSpec
    from simulators.mqtt_client import BrokerError, MqttLink

    def fail(message: str, code: int = 2) -> int:
        print(f"gatehouse simulate camera: {message}", file=sys.stderr)
        return code

    if args.broker and not (args.site_id and args.device):
        return fail("--broker needs --site-id and --device")
    if args.throws < 0 or args.seconds <= 0 or args.fps <= 0:
        return fail("--throws must be >= 0, --seconds and --fps > 0")
    if args.seconds < 6.0 and args.throws > 0:
        return fail("a clip with throws needs --seconds >= 6 (1.5 s lead-in, 4.5 s to fall)")
    spec = ClipSpec(
        name=f"live_{args.device or 'camera'}", seed=args.seed, seconds=args.seconds,
        width=args.width, height=args.height, fps=args.fps, night=args.night,
        throws=args.throws, size_range=(args.min_size, args.max_size),
    )
    renderer = ClipRenderer(spec)
    if args.print_calibration:
        print(calibration_json(renderer), flush=True)
        if not args.broker:
            return 0
    try:
        topic_ok = frame_topic(args.site_id, args.device)
    except ValueError as exc:
        return fail(str(exc))
    link = MqttLink(args.broker, client_id_prefix=f"gh-cam-{args.device}")
    try:
        link.connect()
    except BrokerError as exc:
        return fail(str(exc), 1)
    truth = GroundTruth(args.truth, append=True) if args.truth else None
    try:
        publisher = LiveCameraPublisher(
            renderer, link, site_id=args.site_id, device_id=args.device, qos=args.qos,
            quality=args.quality, truth=truth,
        )
        stats = publisher.run()
    except ValueError as exc:
        return fail(str(exc))
    finally:
        if truth is not None:
            truth.close()
        link.close()
    summary = json.loads(stats.to_json())
    summary["topic"] = topic_ok
    print(json.dumps(summary), flush=True)
    return 0 if stats.flushed and stats.publish_failures == 0 else 1
