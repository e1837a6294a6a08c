"""The edge camera service: events with stable ids and evidence, reconnects, MQTT frames."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device_profiles.messages import Event, make_event_id
from device_profiles.site import DeviceConfig
from edge.camera.clip import ClipMeta
from edge.camera.service import CameraConfigError, CameraService
from simulators.camera.render import ClipRenderer, ClipSpec

START = 1_700_000_000.0


class FakeCapture:
    """Plays a list of frames, then reports the end of the stream."""

    def __init__(self, frames: list[np.ndarray] | None) -> None:
        self._frames = list(frames or [])
        self._opened = frames is not None

    def isOpened(self) -> bool:
        return self._opened

    def read(self) -> tuple[bool, Any]:
        if not self._frames:
            return False, None
        return True, self._frames.pop(0)

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self._opened = False


@pytest.fixture(scope="module")
def clip() -> tuple[list[np.ndarray], ClipMeta]:
    r = ClipRenderer(ClipSpec("svc", seed=42, seconds=7.0, width=640, height=360, throws=1,
                              size_range=(40.0, 60.0)))
    frames = list(r.frames())
    return frames, r.meta()


def _camera(meta: ClipMeta, source: str, dev: str = "b1-cam-1", **extra: Any) -> DeviceConfig:
    return DeviceConfig(id=dev, kind="camera", params={
        "source": source, "calibration": meta.calibration.to_dict(), "fps": 25,
        "realtime": False, "start_ts": START, **extra})


def _wait(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _run_file(tmp_path: Path, frames: list[np.ndarray], meta: ClipMeta) -> list[Event]:
    events: list[Event] = []
    svc = CameraService("site-a", "gw-1", [_camera(meta, "clip.mp4")], tmp_path, events.append,
                        capture_factory=lambda src: FakeCapture(frames))
    svc.start()
    svc.join(120)
    svc.stop()
    assert svc.stats()["b1-cam-1"]["frames"] == len(frames)
    return events


def test_a_throw_becomes_a_critical_event_with_evidence(
    tmp_path: Path, clip: tuple[list[np.ndarray], ClipMeta]
) -> None:
    frames, meta = clip
    events = _run_file(tmp_path, frames, meta)
    assert len(events) == 1
    ev = events[0]
    truth = meta.throws[0]
    assert (ev.type, ev.severity, ev.state, ev.kind) == (
        "camera.object_thrown", "critical", "raised", "camera")
    assert abs(ev.evidence["floor"] - truth.floor) <= 1
    assert abs(ev.evidence["x"] - truth.x) <= 25
    release_ts = ev.evidence["release_ts"]
    assert abs(release_ts - (START + truth.release_frame / 25)) <= 0.2
    assert ev.event_id == make_event_id("site-a", "b1-cam-1", "camera.object_thrown",
                                        release_ts, "raised")
    assert len(ev.evidence["trajectory"]) >= 10
    snap = tmp_path / ev.evidence["snapshot"]
    img = cv2.imread(str(snap))
    assert img is not None and img.shape == (360, 640, 3)


def test_replaying_the_same_stream_yields_the_same_event_id(
    tmp_path: Path, clip: tuple[list[np.ndarray], ClipMeta]
) -> None:
    frames, meta = clip
    first = _run_file(tmp_path / "a", frames, meta)
    second = _run_file(tmp_path / "b", frames, meta)
    assert [e.event_id for e in first] == [e.event_id for e in second]


def test_a_lost_stream_reconnects_with_backoff_and_is_counted(
    tmp_path: Path, clip: tuple[list[np.ndarray], ClipMeta]
) -> None:
    frames, meta = clip
    plan: Iterator[list[np.ndarray] | None] = iter([None, None, frames[:30]] + [None] * 1000)
    svc = CameraService("site-a", "gw-1", [_camera(meta, "rtsp://cam.local/1")], tmp_path,
                        lambda e: None, capture_factory=lambda src: FakeCapture(next(plan)),
                        reconnect_initial=0.01, reconnect_max=0.05)
    svc.start()
    try:
        _wait(lambda: svc.stats()["b1-cam-1"]["reconnects"] >= 4)
        stats = svc.stats()["b1-cam-1"]
    finally:
        svc.stop()
    assert stats["frames"] == 30
    assert stats["open_failures"] >= 3
    assert stats["errors"] == 0


def test_jpeg_frames_over_mqtt_are_detected_and_bad_frames_counted(
    tmp_path: Path, clip: tuple[list[np.ndarray], ClipMeta]
) -> None:
    frames, meta = clip
    events: list[Event] = []
    svc = CameraService("site-a", "gw-1", [_camera(meta, "mqtt")], tmp_path, events.append)
    svc.start()
    try:
        assert not svc.feed_frame("no-such-cam", b"x", 0.0)
        assert svc.feed_frame("b1-cam-1", b"not a jpeg", START)
        for i, f in enumerate(frames):
            ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])
            assert ok
            while not svc.feed_frame("b1-cam-1", buf.tobytes(), START + i / 25):
                pass
            # let the worker keep up: the queue drops the oldest frame when full (by design)
            _wait(lambda i=i: svc.stats()["b1-cam-1"]["frames"] + 40 > i, 30)
        _wait(lambda: len(events) >= 1)
        stats = svc.stats()["b1-cam-1"]
    finally:
        svc.stop()
    assert stats["decode_errors"] == 1
    assert len(events) == 1
    assert abs(events[0].evidence["floor"] - meta.throws[0].floor) <= 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"calibration": {"floor_lines": [300, 200]}}, "params.source"),
        ({"source": "mqtt"}, "params.calibration"),
        ({"source": "mqtt", "calibration": {"floor_lines": [300, 200]}, "fps": 0},
         "params.fps"),
    ],
)
def test_bad_camera_config_is_refused_naming_device_and_field(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    dev = DeviceConfig(id="cam-x", kind="camera", params=params)
    with pytest.raises(CameraConfigError, match=f"cam-x.*{message}"):
        CameraService("s", "g", [dev], tmp_path, lambda e: None)


@pytest.mark.integration
def test_frames_published_on_a_real_broker_reach_the_service(
    broker: Any, tmp_path: Path, clip: tuple[list[np.ndarray], ClipMeta]
) -> None:
    import paho.mqtt.client as mqtt

    frames, meta = clip
    site = f"s{uuid.uuid4().hex[:8]}"
    topic = f"gh/{site}/camera/b1-cam-1/frame"
    events: list[Event] = []
    svc = CameraService(site, "gw-1", [_camera(meta, "mqtt")], tmp_path, events.append)
    received = threading.Event()
    count = [0]

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        dev = msg.topic.split("/")[3]
        svc.feed_frame(dev, msg.payload, START + count[0] / 25)
        count[0] += 1
        received.set()

    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{site}-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{site}-pub")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    svc.start()
    try:
        assert subscribed.wait(10)
        for f in frames:
            _ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])
            pub.publish(topic, buf.tobytes(), qos=1).wait_for_publish(10)
            _wait(lambda: svc.stats()["b1-cam-1"]["frames"] + 40 > count[0], 30)
        _wait(lambda: count[0] == len(frames) and len(events) >= 1)
    finally:
        svc.stop()
        pub.loop_stop()
        sub.loop_stop()
    assert received.is_set()
    assert len(events) == 1
    assert events[0].site_id == site
    assert (tmp_path / events[0].evidence["snapshot"]).is_file()
