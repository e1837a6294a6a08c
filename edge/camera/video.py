"""Running the detector over a whole clip file (used by ``detect-video``, the evaluation and
the benchmark)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.camera.calibration import Calibration
from edge.camera.detector import Alarm, DetectorParams, ThrowDetector


class VideoOpenError(OSError):
    """OpenCV cannot open or decode the clip."""


@dataclass(slots=True)
class ClipResult:
    alarms: list[Alarm]
    frames: int
    fps: float
    width: int
    height: int
    seconds_cpu: float
    rejections: dict[str, int] = field(default_factory=dict)
    disturbed_frames: int = 0


def open_capture(path: str) -> object:
    """A ``cv2.VideoCapture`` on one decoding thread (so per-core speed is honest)."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        cap = cv2.VideoCapture(path)
    return cap


def detect_clip(
    path: Path | str, calibration: Calibration, fps: float | None = None,
    params: DetectorParams | None = None,
) -> ClipResult:
    """Decode ``path`` frame by frame and run a fresh :class:`ThrowDetector` over it."""
    import cv2

    cv2.setNumThreads(1)
    cap = open_capture(str(path))
    if not cap.isOpened():  # type: ignore[attr-defined]
        raise VideoOpenError(f"{path}: OpenCV cannot open this video")
    try:
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))  # type: ignore[attr-defined]
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))  # type: ignore[attr-defined]
        rate = fps or float(cap.get(cv2.CAP_PROP_FPS)) or 25.0  # type: ignore[attr-defined]
        det = ThrowDetector(calibration, rate, width, height, params)
        alarms: list[Alarm] = []
        index = 0
        t0 = time.process_time()
        while True:
            ok, frame = cap.read()  # type: ignore[attr-defined]
            if not ok:
                break
            alarms.extend(det.feed(det.prepare(frame), index))
            index += 1
        alarms.extend(det.finish(index))
        cpu = time.process_time() - t0
    finally:
        cap.release()  # type: ignore[attr-defined]
    if index == 0:
        raise VideoOpenError(f"{path}: no frame could be decoded")
    return ClipResult(alarms, index, rate, width, height, cpu, dict(det.rejections),
                      det.motion.disturbed_frames)
