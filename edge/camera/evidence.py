"""Evidence images: the track drawn on a frame, faces blurred, stored as JPEG at the edge.

Snapshots may leave the site (attached to a work order), so every face OpenCV's bundled
Haar cascade finds is blurred before the file is written; nothing unblurred is stored.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.camera.detector import Alarm

_CASCADE: cv2.CascadeClassifier | None = None


def _cascade() -> cv2.CascadeClassifier:
    global _CASCADE
    if _CASCADE is None:
        path = str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        _CASCADE = cv2.CascadeClassifier(path)
        if _CASCADE.empty():
            raise RuntimeError(f"cannot load the face cascade {path}")
    return _CASCADE


def blur_faces(image: npt.NDArray[np.uint8]) -> int:
    """Blur every detected face in place; return how many were blurred."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    faces = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4,
                                        minSize=(16, 16))
    for x, y, w, h in faces:
        roi = image[y:y + h, x:x + w]
        k = max(3, (max(w, h) // 3) | 1)
        image[y:y + h, x:x + w] = cv2.GaussianBlur(roi, (k, k), 0)
    return len(faces)


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
    frame: npt.NDArray[np.uint8], alarm: Alarm, root: Path, relative: str, quality: int = 85
) -> Path:
    """Draw, blur faces, write ``root/relative`` (JPEG); return the written path."""
    clean = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    blur_faces(clean)
    img = draw_track(np.asarray(clean, np.uint8), alarm)
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot encode evidence image {path}")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
    return path
