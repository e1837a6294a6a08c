"""Frame sources for the camera service: OpenCV captures (file or RTSP) and JPEG frames pushed
over MQTT. A capture is made through a factory so tests can hand in fakes."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the service uses."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[str], Capture]


def opencv_capture(source: str) -> Capture:
    """Open ``source`` (a file path or an ``rtsp://``/``http://`` URL) with FFmpeg, one
    decoding thread."""
    from edge.camera.video import open_capture

    cap: Capture = open_capture(source)  # type: ignore[assignment]
    return cap


@dataclass(frozen=True, slots=True)
class JpegFrame:
    data: bytes
    ts: float


class FrameQueue:
    """Bounded hand-off of MQTT JPEG frames to a camera's worker; the oldest frame is dropped
    (and counted) when the worker falls behind, so a slow gateway loses frames, not memory."""

    def __init__(self, maxsize: int = 50) -> None:
        self._q: queue.Queue[JpegFrame | None] = queue.Queue(maxsize)
        self.dropped = 0

    def put(self, frame: JpegFrame | None) -> None:
        while True:
            try:
                self._q.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float) -> JpegFrame | None:
        """Next frame, or ``None`` on timeout or when the queue is closed."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None


def decode_jpeg(data: bytes, factor: int) -> npt.NDArray[np.uint8] | None:
    """Grey processing image straight from JPEG (libjpeg's reduced-size decoding for a
    factor of 2, 4 or 8, which skips most of the work) and the full (width, height)."""
    import cv2

    buf = np.frombuffer(data, np.uint8)
    flags = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
             4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
    flag = flags.get(factor)
    img = cv2.imdecode(buf, flag if flag is not None else cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if flag is None and factor > 1:
        h, w = img.shape
        img = cv2.resize(img, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return np.asarray(img, np.uint8)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG, from a full grey decode (done once per camera)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    h, w = img.shape
    return int(w), int(h)
