"""Evidence images: the track drawn on a frame, faces blurred, stored as JPEG at the edge.

Snapshots may leave the site (attached to a work order), so faces are blurred before the
file is written (see :class:`FaceBlurrer`); nothing unblurred is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.camera.detector import Alarm

_CV: Any = cv2
"""Untyped view of cv2 for the parts whose presence depends on the OpenCV version."""

def _box(f: Any) -> tuple[int, int, int, int]:
    return int(f[0]), int(f[1]), int(f[2]), int(f[3])


class FaceBlurrer:
    """Blurs faces before an evidence image is stored.

    Which detector is used depends on what this OpenCV offers: the YuNet detector
    (``cv2.FaceDetectorYN``) when a model file is given, else the bundled Haar cascade (OpenCV
    4.x ships it; 5.x does not). With neither, the privacy fallback pixelates everything
    outside a corridor around the trajectory, so no face away from the falling object's path
    can leave the site recognisable.
    """

    def __init__(self, yunet_model: str | None = None, corridor_px: int = 60) -> None:
        self.corridor_px = corridor_px
        self.mode = "corridor"
        self._yunet: Any = None
        self._haar: Any = None
        if yunet_model and hasattr(cv2, "FaceDetectorYN"):
            self._yunet = _CV.FaceDetectorYN.create(yunet_model, "", (320, 320))
            self.mode = "yunet"
        elif hasattr(cv2, "CascadeClassifier"):
            path = Path(_CV.data.haarcascades) / "haarcascade_frontalface_default.xml"
            if path.is_file():
                haar = _CV.CascadeClassifier(str(path))
                if not haar.empty():
                    self._haar = haar
                    self.mode = "haar"

    def faces(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) found by the available detector (none in corridor mode)."""
        if self._yunet is not None:
            h, w = image.shape[:2]
            self._yunet.setInputSize((w, h))
            bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            _, found = self._yunet.detect(bgr)
            return [] if found is None else [_box(f) for f in found]
        if self._haar is not None:
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
            found = self._haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4,
                                                minSize=(16, 16))
            return [_box(f) for f in found]
        return []

    def apply(self, image: npt.NDArray[np.uint8], track: list[tuple[int, float, float]]) -> int:
        """Blur faces in place (or pixelate outside the track corridor); return the number of
        regions blurred."""
        if self.mode == "corridor":
            keep = np.zeros(image.shape[:2], np.uint8)
            pts = np.array([[round(x), round(y)] for _, x, y in track], np.int32)
            if len(pts):
                cv2.polylines(keep, [pts.reshape(-1, 1, 2)], False, 255, 2 * self.corridor_px)
            h, w = image.shape[:2]
            small = cv2.resize(image, (max(1, w // 16), max(1, h // 16)),
                               interpolation=cv2.INTER_AREA)
            coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
            outside = keep == 0
            image[outside] = coarse[outside]
            return 1
        boxes = self.faces(image)
        for x, y, bw, bh in boxes:
            x, y = max(0, x), max(0, y)
            roi = image[y:y + bh, x:x + bw]
            if roi.size == 0:
                continue
            k = max(3, (max(bw, bh) // 3) | 1)
            image[y:y + bh, x:x + bw] = cv2.GaussianBlur(roi, (k, k), 0)
        return len(boxes)


def draw_track(frame: npt.NDArray[np.uint8], alarm: Alarm) -> npt.NDArray[np.uint8]:
    """A colour copy of ``frame`` with the trajectory, the release point and the floor."""
    img = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    pts = np.array([[round(x), round(y)] for _, x, y in alarm.trajectory], np.int32)
    if len(pts) > 1:
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, (0, 0, 255), 2, cv2.LINE_AA)
    for x, y in pts:
        cv2.circle(img, (int(x), int(y)), 3, (0, 255, 255), 1, cv2.LINE_AA)
    rx, ry = round(alarm.x), round(alarm.release_y)
    cv2.drawMarker(img, (rx, ry), (0, 255, 0), cv2.MARKER_CROSS, 18, 2)
    label = f"floor {alarm.floor}" + (
        f", column {alarm.window_column}" if alarm.window_column is not None else "")
    cv2.putText(img, label, (rx + 12, max(18, ry - 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 255, 0), 2, cv2.LINE_AA)
    return np.asarray(img, np.uint8)


def save_evidence(
    frame: npt.NDArray[np.uint8], alarm: Alarm, root: Path, relative: str,
    blurrer: FaceBlurrer | None = None, quality: int = 85,
) -> Path:
    """Blur faces, draw the track, write ``root/relative`` (JPEG) atomically; return the
    written path."""
    clean = np.asarray(
        cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy(), np.uint8)
    (blurrer or FaceBlurrer()).apply(clean, alarm.trajectory)
    img = draw_track(clean, alarm)
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot encode evidence image {path}")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
    return path
