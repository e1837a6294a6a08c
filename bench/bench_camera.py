"""Benchmark: thrown-object detection speed per CPU core at 1280 x 720, decoding included.

Run: ``.venv/bin/python bench/bench_camera.py [--dir CLIPS] [--seconds 20]``

Without ``--dir`` it renders two clips (one with throws and light distractors, one
distractor-dense) with the simulator into a temporary folder. For each clip it measures, on
one thread (OpenCV and FFmpeg limited to one thread, CPU time of this process):

* ``decode``: ``VideoCapture.read`` alone: the baseline, measured in the same run;
* ``pipeline``: decode + grey + downscale + motion + tracking + fall test;
* ``jpeg_pipeline``: the MQTT path: each frame JPEG-encoded beforehand, then reduced-size
  JPEG decoding + detection.

It prints one JSON object, then a human summary with ratios against the decode baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from edge.camera.clip import find_clips, read_meta, sidecar_of
from edge.camera.detector import ThrowDetector
from edge.camera.sources import decode_jpeg
from edge.camera.video import open_capture


def _decode_only(path: Path) -> tuple[int, float]:
    cap = open_capture(str(path))
    n = 0
    t0 = time.process_time()
    while True:
        ok, _ = cap.read()  # type: ignore[attr-defined]
        if not ok:
            break
        n += 1
    cpu = time.process_time() - t0
    cap.release()  # type: ignore[attr-defined]
    return n, cpu


def _pipeline(path: Path) -> tuple[int, float, int]:
    meta = read_meta(sidecar_of(path))
    cap = open_capture(str(path))
    det = ThrowDetector(meta.calibration, meta.fps, meta.width, meta.height)
    n = alarms = 0
    t0 = time.process_time()
    while True:
        ok, frame = cap.read()  # type: ignore[attr-defined]
        if not ok:
            break
        alarms += len(det.feed(det.prepare(frame), n))
        n += 1
    alarms += len(det.finish(n))
    cpu = time.process_time() - t0
    cap.release()  # type: ignore[attr-defined]
    return n, cpu, alarms


def _jpeg_pipeline(path: Path, limit: int = 300) -> tuple[int, float]:
    meta = read_meta(sidecar_of(path))
    cap = open_capture(str(path))
    jpegs = []
    while len(jpegs) < limit:
        ok, frame = cap.read()  # type: ignore[attr-defined]
        if not ok:
            break
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        jpegs.append(buf.tobytes())
    cap.release()  # type: ignore[attr-defined]
    det = ThrowDetector(meta.calibration, meta.fps, meta.width, meta.height)
    want = (meta.height // det.factor, meta.width // det.factor)
    t0 = time.process_time()
    for i, data in enumerate(jpegs):
        proc = decode_jpeg(data, det.factor)
        assert proc is not None
        det.feed(np.ascontiguousarray(proc[: want[0], : want[1]]), i)
    return len(jpegs), time.process_time() - t0


def _render(out: Path, seconds: float) -> None:
    from simulators.camera.render import DISTRACTORS, ClipSpec, render_clip

    render_clip(ClipSpec("bench_throws", seed=3, seconds=seconds, throws=3,
                         distractors=("birds", "flicker", "leaves")), out)
    render_clip(ClipSpec("bench_distractors", seed=4, seconds=seconds, throws=0,
                         distractors=DISTRACTORS), out)


def render_independent(out: Path, clips: int, seed: int) -> int:
    """Write ``clips`` clips made by the independent renderer of the tests (a level camera,
    brick facade, square objects, Euler physics, MJPEG) with random throws, for
    ``gatehouse eval throwing``: the figures on scenes the simulator never drew."""
    from tests.test_camera_video import independent_clip

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        throws = []
        t = float(rng.uniform(1.5, 2.5))
        for _ in range(int(rng.integers(1, 3))):
            throws.append({"floor": int(rng.integers(3, 8)), "x": float(rng.uniform(160, 800)),
                           "t": t, "side": float(rng.uniform(2.5, 8.0)),
                           "drag": float(rng.choice([0.0, 0.0, 0.5, 1.5])),
                           "vx": float(rng.uniform(-3, 3))})
            t += float(rng.uniform(3.0, 4.0))
        independent_clip(out, f"indep_{i:03d}", seed * 1000 + i, throws, seconds=t + 3.0,
                         rain=bool(rng.random() < 0.5), night=bool(rng.random() < 0.3))
    return clips


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="folder of clips (default: render two 1280x720 clips)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of rendered clips")
    ap.add_argument("--render-independent", metavar="DIR",
                    help="only write clips of the independent renderer into DIR and exit")
    ap.add_argument("--clips", type=int, default=20, help="clips for --render-independent")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.render_independent:
        n = render_independent(Path(args.render_independent), args.clips, args.seed)
        print(json.dumps({"clips": n, "out": args.render_independent}))
        return 0
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="bench_camera_") as tmp:
        folder = Path(args.dir) if args.dir else Path(tmp)
        if not args.dir:
            _render(folder, args.seconds)
        rows = []
        for clip in find_clips(folder):
            n_dec, cpu_dec = _decode_only(clip)
            n, cpu, alarms = _pipeline(clip)
            n_j, cpu_j = _jpeg_pipeline(clip)
            meta = read_meta(sidecar_of(clip))
            rows.append({
                "clip": clip.name, "width": meta.width, "height": meta.height, "frames": n,
                "decode_fps_per_core": round(n_dec / cpu_dec, 1),
                "pipeline_fps_per_core": round(n / cpu, 1),
                "jpeg_pipeline_fps_per_core": round(n_j / cpu_j, 1),
                "pipeline_vs_decode": round((n / cpu) / (n_dec / cpu_dec), 3),
                "detection_ms_per_frame": round(1000 * (cpu / n - cpu_dec / n_dec), 3),
                "alarms": alarms,
            })
    total_frames = sum(r["frames"] for r in rows)
    total_cpu = sum(r["frames"] / r["pipeline_fps_per_core"] for r in rows)
    overall = total_frames / total_cpu
    result = {
        "benchmark": "camera", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_count": os.cpu_count(), "opencv": cv2.__version__, "clips": rows,
        "pipeline_fps_per_core": round(overall, 1),
        "cameras_per_core_at_25fps": round(overall / 25.0, 2),
        "target_fps_per_core": 150, "meets_target": overall >= 150,
    }
    print(json.dumps(result))
    print()
    for r in rows:
        print(f"{r['clip']}: {r['width']}x{r['height']}, {r['frames']} frames: decode "
              f"{r['decode_fps_per_core']} f/s, decode+detect {r['pipeline_fps_per_core']} "
              f"f/s ({r['pipeline_vs_decode']:.2f}x of decode alone; detection "
              f"{r['detection_ms_per_frame']} ms/frame), MQTT JPEG path "
              f"{r['jpeg_pipeline_fps_per_core']} f/s")
    print(f"overall {result['pipeline_fps_per_core']} frames/s per core including decoding "
          f"= {result['cameras_per_core_at_25fps']} cameras at 25 fps per core "
          f"(target 150: {'met' if result['meets_target'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
