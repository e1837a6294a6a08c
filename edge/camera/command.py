"""``gatehouse detect-video CLIP``: print one JSON line per thrown-object alarm.

Output lines are ``{"frame": F, "floor": N, "x": X, "release_frame": F0}``; ``frame`` is the
frame at which the alarm was raised. The calibration defaults to the clip's sidecar JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", help="video file OpenCV can read (NAME.mp4 | NAME.avi)")
    parser.add_argument(
        "--calibration", metavar="FILE.json",
        help="calibration JSON (a clip sidecar or a bare calibration); default: the clip's "
        "sidecar NAME.json",
    )
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate (default: the sidecar's, else the video's)")
    parser.add_argument("--verbose", action="store_true",
                        help="add trajectory and fit details to each line")


def run(args: argparse.Namespace) -> int:
    from edge.camera.calibration import Calibration, CalibrationError
    from edge.camera.video import VideoOpenError, detect_clip

    clip = Path(args.clip)
    cal_path = Path(args.calibration) if args.calibration else clip.with_suffix(".json")
    try:
        cal = Calibration.from_json_file(cal_path)
    except CalibrationError as exc:
        print(f"gatehouse detect-video: {exc}", file=sys.stderr)
        return 2
    fps = args.fps
    if fps is None:
        try:
            side = json.loads(cal_path.read_text(encoding="utf-8"))
            if isinstance(side, dict) and isinstance(side.get("fps"), int | float):
                fps = float(side["fps"])
        except (OSError, json.JSONDecodeError):
            fps = None
    try:
        result = detect_clip(clip, cal, fps)
    except VideoOpenError as exc:
        print(f"gatehouse detect-video: {exc}", file=sys.stderr)
        return 2
    for alarm in result.alarms:
        line: dict[str, object] = dict(alarm.to_json())
        if args.verbose:
            line["window_column"] = alarm.window_column
            line["trajectory"] = alarm.trajectory
            line["rms_px"] = round(alarm.fit.rms_px, 2)
            vt = alarm.fit.terminal_mps
            line["terminal_mps"] = None if vt == float("inf") else vt
        print(json.dumps(line), flush=True)
    return 0
