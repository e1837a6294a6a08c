"""Benchmark: thrown-object detection speed per CPU core at 1280 x 720, decoding included.

Run: ``.venv/bin/python bench/bench_camera.py [--dir CLIPS] [--seconds 20]``

``--render-independent DIR --clips N --distractor-clips M`` only writes clips of the
independent renderer (``tests/camera_independent.py``) for ``gatehouse eval throwing``;
``--merge-evals A.json B.json`` only combines evaluations of disjoint parts of one set.

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
from typing import Any

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
    jpegs: list[bytes] = []
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


def _independent_job(job: tuple[str, str, int, list[dict[str, float]], dict[str, Any]]) -> str:
    from tests.camera_independent import independent_clip

    out, name, seed, throws, kw = job
    video = Path(out) / f"{name}.avi"
    if video.exists() and video.with_suffix(".json").exists():
        return str(video)  # resume: the sidecar is written last
    return str(independent_clip(Path(out), name, seed, throws, **kw))


def render_independent(out: Path, clips: int, seed: int, distractor_clips: int = 0,
                       distractor_seconds: float = 60.0, jobs: int = 1) -> int:
    """Write clips made by the independent renderer (``tests/camera_independent.py``: a
    level camera, brick facade, square objects, Euler physics with linear drag, MJPEG,
    its own distractors) for ``gatehouse eval throwing``: the figures on scenes the
    simulator never drew. ``clips`` throw clips (1-2 objects, 0-3 distractor kinds, or the
    original light set), then ``distractor_clips`` clips of ``distractor_seconds`` with
    every distractor kind on and no object. Deterministic for a seed; clips already
    rendered are skipped."""
    from tests.camera_independent import DISTRACTORS

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    work: list[tuple[str, str, int, list[dict[str, float]], dict[str, Any]]] = []

    def scene() -> dict[str, Any]:
        floors = int(rng.integers(5, 8))
        floor_px = int(rng.integers(56, min(71, 470 // floors + 1)))
        return {"floors": floors, "floor_px": floor_px, "margin": int(rng.integers(60, 161)),
                "night": bool(rng.random() < 0.3)}

    for i in range(clips):
        kw = scene()
        throws = []
        t = float(rng.uniform(1.5, 2.5))
        for _ in range(int(rng.integers(1, 3))):
            lo = kw["margin"] + 40
            throws.append({"floor": int(rng.integers(3, kw["floors"] + 1)),
                           "x": float(rng.uniform(lo, 960 - lo)),
                           "t": t, "side": float(rng.uniform(2.5, 9.0)),
                           "drag": float(rng.choice([0.0, 0.0, 0.5, 1.5])),
                           "vx": float(rng.uniform(-3, 3))})
            t += float(rng.uniform(3.0, 4.0))
        k = int(rng.integers(0, 4))
        kinds = tuple(sorted(str(d) for d in rng.choice(DISTRACTORS, size=k, replace=False)))
        kw.update(seconds=t + 3.0, rain=bool(rng.random() < 0.5), distractors=kinds)
        work.append((str(out), f"indep_{i:03d}", seed * 1000 + i, throws, kw))
    for i in range(distractor_clips):
        kw = scene()
        kw.update(seconds=distractor_seconds, distractors=DISTRACTORS)
        work.append((str(out), f"indep_distractors_{i:03d}", seed * 1000 + 500 + i, [], kw))
    if jobs > 1:
        from multiprocessing import Pool

        with Pool(jobs) as pool:
            pool.map(_independent_job, work, chunksize=1)
    else:
        for job in work:
            _independent_job(job)
    return len(work)


def merge_evaluations(paths: list[str]) -> dict[str, Any]:
    """Combine ``gatehouse eval throwing --json`` outputs of disjoint sets of clips (a set
    evaluated in parts while the rest was still rendering): counts, hours, frames and CPU
    time add up; latency comes from the one part that holds throws (refused otherwise)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    with_throws = [s for s in parts
                   if sum(r["throws"] for r in s["recall_by_size_all_floors"].values())]
    if len(with_throws) > 1:
        raise SystemExit("more than one part holds throws: latency cannot be merged")

    def band(key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in parts[0][key]:
            t = sum(s[key][name]["throws"] for s in parts)
            d = sum(s[key][name]["detected"] for s in parts)
            out[name] = {"throws": t, "detected": d, "recall": round(d / t, 4) if t else None}
        return out

    hours = sum(s["camera_hours"] for s in parts)
    d_hours = sum(s["camera_hours_distractor_only"] for s in parts)
    fa = sum(s["false_alarms"] for s in parts)
    fa_d = sum(round((s["false_alarms_per_camera_hour_distractor_only"] or 0)
                     * s["camera_hours_distractor_only"]) for s in parts)
    frames = sum(s["frames"] for s in parts)
    cpu = sum(s["frames"] / s["fps_per_core"] for s in parts if s["fps_per_core"])
    first = with_throws[0] if with_throws else parts[0]
    rejected: dict[str, int] = {}
    for s in parts:
        for k, v in s["rejected_tracks"].items():
            rejected[k] = rejected.get(k, 0) + v
    return {
        "parts": len(parts), "clips": sum(s["clips"] for s in parts), "frames": frames,
        "camera_hours": round(hours, 4), "camera_hours_distractor_only": round(d_hours, 4),
        "renderers": sorted({r for s in parts for r in s["renderers"]}),
        "recall_by_size": band("recall_by_size"),
        "recall_by_size_all_floors": band("recall_by_size_all_floors"),
        "false_alarms": fa,
        "false_alarms_per_camera_hour": round(fa / hours, 4) if hours else None,
        "false_alarms_per_camera_hour_distractor_only": round(fa_d / d_hours, 4)
        if d_hours else None,
        "false_alarm_list": [a for s in parts for a in s["false_alarm_list"]],
        "floor_within_one": first["floor_within_one"], "floor_exact": first["floor_exact"],
        "latency_s": first["latency_s"],
        "fps_per_core": round(frames / cpu, 1) if cpu else None,
        "rejected_tracks": dict(sorted(rejected.items())),
        "errors": [e for s in parts for e in s["errors"]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="folder of clips (default: render two 1280x720 clips)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of rendered clips")
    ap.add_argument("--render-independent", metavar="DIR",
                    help="only write clips of the independent renderer into DIR and exit")
    ap.add_argument("--clips", type=int, default=20, help="throw clips for --render-independent")
    ap.add_argument("--distractor-clips", type=int, default=0,
                    help="distractor-only clips for --render-independent (60 = one camera-hour)")
    ap.add_argument("--distractor-seconds", type=float, default=60.0)
    ap.add_argument("--jobs", type=int, default=1, help="render processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--merge-evals", nargs="+", metavar="JSON",
                    help="only combine 'gatehouse eval throwing --json' outputs of disjoint "
                    "parts of one set and print the result")
    args = ap.parse_args()
    if args.merge_evals:
        print(json.dumps(merge_evaluations(args.merge_evals)))
        return 0
    if args.render_independent:
        n = render_independent(Path(args.render_independent), args.clips, args.seed,
                               args.distractor_clips, args.distractor_seconds, args.jobs)
        print(json.dumps({"clips": n, "out": args.render_independent}))
        return 0
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="bench_camera_") as tmp:
        folder = Path(args.dir) if args.dir else Path(tmp)
        if not args.dir:
            _render(folder, args.seconds)
        rows: list[dict[str, Any]] = []
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
