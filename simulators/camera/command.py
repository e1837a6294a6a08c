"""``gatehouse simulate camera``: render a set of clips with ground truth.

Two kinds of clip: *throw* clips (one to three objects each, with a random handful of
distractors) and *distractor-only* clips (every distractor on, no object). ``--eval-hour``
writes the full evaluation set (throw clips plus at least one camera-hour of distractor-only
video); ``--quick`` a small set for tests.

Live mode (``--broker``, or ``--print-calibration`` alone): render one clip and publish each
frame as a JPEG over MQTT in real time (see :mod:`simulators.camera.live`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output folder (created); required unless live")
    parser.add_argument("--clips", type=int, default=10, help="throw clips (default 10)")
    parser.add_argument("--distractors-only", type=int, default=2, metavar="N",
                        help="distractor-only clips (default 2)")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds per throw clip")
    parser.add_argument("--distractor-seconds", type=float, default=60.0,
                        help="seconds per distractor-only clip (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--night-share", type=float, default=0.3,
                        help="share of clips rendered at night (default 0.3)")
    parser.add_argument("--throws-per-clip", type=int, default=2, help="max objects per clip")
    parser.add_argument("--min-size", type=float, default=6.0, help="min object area, px")
    parser.add_argument("--max-size", type=float, default=120.0, help="max object area, px")
    parser.add_argument("--codec", default="mp4v", help="fourcc: mp4v (.mp4) or MJPG (.avi)")
    parser.add_argument("--eval-hour", action="store_true",
                        help="the full evaluation set: --clips 60 and >= 1 camera-hour of "
                        "distractor-only video (60 clips x 60 s)")
    parser.add_argument("--quick", action="store_true",
                        help="a small set for tests: 4 throw clips of 8 s, 1 distractor clip "
                        "of 20 s at 640x360")
    parser.add_argument("--jobs", type=int, default=1, help="render processes (default 1)")
    parser.add_argument("--resume", action="store_true",
                        help="skip clips whose video and sidecar are already in --out (the "
                        "sidecar is written last, so an interrupted clip is rendered again)")
    live = parser.add_argument_group("live mode (one clip published as JPEG frames over MQTT)")
    live.add_argument("--broker", help="mqtt://host:port: publish live instead of writing files")
    live.add_argument("--site-id", help="site id of the frame topic gh/{site}/camera/{id}/frame")
    live.add_argument("--device", help="camera device id (as in the site file)")
    live.add_argument("--throws", type=int, default=1, help="objects thrown in the clip")
    live.add_argument("--night", action="store_true", help="render the clip at night")
    live.add_argument("--quality", type=int, default=85, help="JPEG quality 1..100")
    live.add_argument("--qos", type=int, default=1, choices=(0, 1, 2), help="MQTT QoS")
    live.add_argument("--truth", help="append each throw's ground truth here (JSON lines)")
    live.add_argument("--print-calibration", action="store_true",
                      help="print the params.calibration JSON for the site file (alone: "
                      "print it and exit, for the same --seed --width --height)")


def build_specs(args: argparse.Namespace) -> list[object]:
    import numpy as np

    from simulators.camera.render import DISTRACTORS, ClipSpec

    clips, dclips = args.clips, args.distractors_only
    seconds, dseconds = args.seconds, args.distractor_seconds
    width, height = args.width, args.height
    if args.eval_hour:
        clips, dclips, dseconds = max(clips, 60), max(dclips, 60), max(dseconds, 60.0)
    if args.quick:
        clips, dclips, seconds, dseconds, width, height = 4, 1, 8.0, 20.0, 640, 360
    rng = np.random.default_rng(args.seed)
    specs: list[object] = []
    light = ("birds", "flicker", "lights", "leaves", "rain", "laundry", "exposure")
    for i in range(clips):
        kinds = tuple(sorted(rng.choice(light, size=int(rng.integers(0, 4)), replace=False)))
        specs.append(ClipSpec(
            name=f"throw_{i:03d}", seed=args.seed * 100003 + i, seconds=seconds, width=width,
            height=height, fps=args.fps, night=bool(rng.random() < args.night_share),
            throws=int(rng.integers(1, args.throws_per_clip + 1)), distractors=kinds,
            size_range=(args.min_size, args.max_size), codec=args.codec,
        ))
    for i in range(dclips):
        specs.append(ClipSpec(
            name=f"distractors_{i:03d}", seed=args.seed * 100003 + 50000 + i, seconds=dseconds,
            width=width, height=height, fps=args.fps,
            night=bool(rng.random() < args.night_share), throws=0, distractors=DISTRACTORS,
            codec=args.codec,
        ))
    return specs


def _render_one(job: tuple[object, str, bool]) -> str:
    from simulators.camera.render import ClipSpec, render_clip

    spec, out, resume = job
    assert isinstance(spec, ClipSpec)
    if resume:
        suffix = ".avi" if spec.codec.upper() in {"MJPG", "XVID"} else ".mp4"
        video = Path(out) / f"{spec.name}{suffix}"
        if video.exists() and video.with_suffix(".json").exists():
            return str(video)
    video, _ = render_clip(spec, Path(out))
    return str(video)


def run(args: argparse.Namespace) -> int:
    if args.broker or args.print_calibration:
        from simulators.camera.live import run_live

        return run_live(args)
    if not args.out:
        print("gatehouse simulate camera: --out is required (or --broker for live mode)",
              file=sys.stderr)
        return 2
    specs = build_specs(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, str(out), bool(args.resume)) for s in specs]
    if args.jobs > 1:
        from multiprocessing import Pool

        with Pool(args.jobs) as pool:
            videos = pool.map(_render_one, jobs, chunksize=1)
    else:
        videos = [_render_one(j) for j in jobs]
    json.dump({"clips": len(videos), "out": str(out)}, sys.stdout)
    print()
    return 0
