"""Thrown-object detection on short clips: every distractor alone, each size band, the
commands, and clips from an independent renderer written differently from the simulator."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera.calibration import Calibration
from edge.camera.clip import ClipMeta, Throw, read_meta, write_meta
from edge.camera.evaluation import match_alarms
from edge.camera.video import detect_clip
from simulators.camera.render import DISTRACTORS, ClipSpec, render_clip

ROOT = Path(__file__).resolve().parents[1]


# --- an independent renderer ------------------------------------------------------------
def independent_clip(
    out: Path, name: str, seed: int, throws: list[dict[str, float]], seconds: float = 9.0,
    width: int = 960, height: int = 540, fps: int = 25, rain: bool = True, night: bool = False,
) -> Path:
    """Render a clip differently from ``simulators.camera``: colour, a level camera (evenly
    spaced floors), a brick texture, square objects integrated with Euler steps and linear
    drag, motion blur by averaging sub-frames, uniform noise, short rain dashes, a bird and a
    blinking window; MJPEG in AVI. ``throws``: dicts with floor, x (px), t (s), side (px),
    drag (1/s), vx (m/s)."""
    rng = np.random.default_rng(seed)
    floors, ground, floor_px = 7, height - 40, 64
    lines = [ground - floor_px * k for k in range(floors + 1)]
    ppm = floor_px / 3.0
    bg = np.zeros((height, width, 3), np.uint8)
    bg[:] = (200, 170, 140)  # sky
    left, right = 120, width - 120
    bg[lines[-1]:ground, left:right] = (70, 90, 150)  # brick facade
    bricks = rng.integers(-18, 18, (ground - lines[-1], right - left, 1))
    bg[lines[-1]:ground, left:right] = np.clip(
        bg[lines[-1]:ground, left:right].astype(int) + bricks, 0, 255).astype(np.uint8)
    for k in range(floors):
        top = lines[k + 1]
        for cx in range(left + 40, right - 40, 110):
            bg[top + 14:top + 44, cx:cx + 50] = (40, 40, 45)
        bg[lines[k] - 2:lines[k], left:right] = (160, 160, 160)
    bg[ground:, :] = (90, 90, 90)
    if night:
        bg = (bg.astype(np.float32) * 0.22).astype(np.uint8)
    meta_throws = []
    objs = []
    for th in throws:
        z0 = (th["floor"] - 1) * 3.0 + 1.3
        objs.append({**th, "z": z0, "vz": 0.0, "xm": (th["x"] - left) / ppm, "end": -1,
                     "colour": tuple(int(c) for c in (rng.integers(150, 230, 3) if night
                                                      else rng.integers(0, 60, 3)))})
    n = int(seconds * fps)
    path = out / f"{name}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    blink = (left + 40 + 110 * 3, lines[4] + 14)
    dashes = rng.uniform(0, 1, (60, 2)) * (width, height)
    bird = [-20.0, 180.0]
    sub = 4
    for i in range(n):
        frame = np.zeros((height, width, 3), np.float32)
        for s in range(sub):
            img = bg.copy()
            if (i // 30) % 2:
                cv2.rectangle(img, blink, (blink[0] + 50, blink[1] + 30), (120, 220, 250), -1)
            t = (i + s / sub) / fps
            for o in objs:
                if t < o["t"] or o["z"] <= 0:
                    continue
                half = o["side"] / 2
                cx = left + o["xm"] * ppm
                cy = ground - o["z"] * ppm
                cv2.rectangle(img, (round(cx - half), round(cy - half)),
                              (round(cx + half) - 1, round(cy + half) - 1), o["colour"], -1)
            frame += img
            for o in objs:  # Euler step of 1/(fps*sub) s with linear drag
                if t < o["t"] or o["z"] <= 0:
                    continue
                dt = 1.0 / (fps * sub)
                o["vz"] += (-9.81 - o["drag"] * o["vz"]) * dt
                o["z"] += o["vz"] * dt
                o["xm"] += o["vx"] * dt
                if o["z"] <= 0 and o["end"] < 0:
                    o["end"] = i
        img = (frame / sub).astype(np.uint8)
        bird[0] += 9.0
        bird[1] += 0.8 * math.sin(i / 3)
        cv2.ellipse(img, (round(bird[0]), round(bird[1])), (5, 2), 0, 0, 360, (30, 30, 30), -1)
        if rain:
            dashes[:, 1] += 23.0
            dashes[dashes[:, 1] > height, 1] -= height
            for dx, dy in dashes:
                cv2.line(img, (int(dx), int(dy)), (int(dx) + 1, int(dy) + 9), (215, 215, 215), 1)
        noise = rng.integers(-7, 8, img.shape, dtype=np.int16)
        writer.write(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    writer.release()
    for o in objs:
        area = o["side"] ** 2
        meta_throws.append(Throw(round(o["t"] * fps), o["end"] if o["end"] >= 0 else n - 1,
                                 int(o["floor"]), float(o["x"]), float(area)))
    cal = Calibration.from_dict({
        "floor_lines": lines,
        "masks": [[[0, ground + 2], [width, ground + 2], [width, height], [0, height]]],
        "facade": [[left, ground], [right, ground], [right, lines[-1]], [left, lines[-1]]],
    })
    write_meta(ClipMeta(float(fps), width, height, cal, tuple(meta_throws),
                        {"renderer": "test-independent"}), path.with_suffix(".json"))
    return path


# --- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("camera_clips")


def _alarms(video: Path) -> tuple[ClipMeta, list[object], list[object]]:
    meta = read_meta(video.with_suffix(".json"))
    result = detect_clip(video, meta.calibration, meta.fps)
    pairs, extra = match_alarms(meta, result.alarms)
    return meta, pairs, extra


# --- tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DISTRACTORS)
def test_each_distractor_alone_raises_no_alarm(clips: Path, kind: str) -> None:
    for night in (False, True):
        spec = ClipSpec(f"only_{kind}_{int(night)}", seed=hash(kind) % 1000 + night,
                        seconds=8.0, width=640, height=360, night=night, throws=0,
                        distractors=(kind,) * 1)
        video, _ = render_clip(spec, clips)
        _, _, extra = _alarms(video)
        assert extra == [], f"{kind} {'night' if night else 'day'}: false alarm {extra}"


@pytest.mark.parametrize(
    ("band", "size_range", "min_hits"),
    [("ge16", (16.0, 80.0), 4), ("6to15", (6.0, 15.0), 3)],
)
def test_thrown_objects_of_each_size_band_are_found(
    clips: Path, band: str, size_range: tuple[float, float], min_hits: int
) -> None:
    hits = total = 0
    floors_ok = 0
    for k in range(2):
        spec = ClipSpec(f"throw_{band}_{k}", seed=500 + k + (10 if band == "ge16" else 0),
                        seconds=10.0, width=1280, height=720, night=bool(k), throws=2,
                        distractors=("birds", "flicker"), size_range=size_range)
        video, _ = render_clip(spec, clips)
        _, pairs, extra = _alarms(video)
        assert extra == []
        for throw, alarm in pairs:
            total += 1
            if alarm is not None:
                hits += 1
                floors_ok += abs(alarm.floor - throw.floor) <= 1  # type: ignore[attr-defined]
    assert total == 4
    assert hits >= min_hits
    assert floors_ok == hits


def test_clip_from_an_independent_renderer(clips: Path) -> None:
    video = independent_clip(clips, "independent_a", 3, [
        {"floor": 6, "x": 300.0, "t": 2.0, "side": 5.0, "drag": 0.0, "vx": 1.0},
        {"floor": 4, "x": 650.0, "t": 4.5, "side": 3.0, "drag": 0.8, "vx": -2.0},
    ])
    _meta, pairs, extra = _alarms(video)
    assert extra == []
    for throw, alarm in pairs:
        assert alarm is not None, f"missed {throw}"
        assert abs(alarm.floor - throw.floor) <= 1  # type: ignore[attr-defined]


def test_detect_video_command_prints_one_json_line_per_alarm(clips: Path) -> None:
    video = independent_clip(clips, "independent_cmd", 4, [
        {"floor": 5, "x": 420.0, "t": 2.0, "side": 6.0, "drag": 0.0, "vx": 0.0},
    ], seconds=6.0, rain=False)
    out = subprocess.run(
        [sys.executable, "-m", "gatehouse.cli", "detect-video", str(video),
         "--calibration", str(video.with_suffix(".json"))],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    assert set(lines[0]) == {"frame", "floor", "x", "release_frame"}
    assert abs(lines[0]["floor"] - 5) <= 1
    assert abs(lines[0]["release_frame"] - 50) <= 4
    assert abs(lines[0]["x"] - 420) <= 20


def test_detect_video_refuses_a_missing_clip(tmp_path: Path) -> None:
    side = tmp_path / "none.json"
    side.write_text(json.dumps({"floor_lines": [600, 500]}))
    out = subprocess.run(
        [sys.executable, "-m", "gatehouse.cli", "detect-video", str(tmp_path / "none.mp4")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert out.returncode == 2
    assert "cannot open" in out.stderr


def test_eval_throwing_command_reports_the_contract_figures(tmp_path: Path) -> None:
    sim = subprocess.run(
        [sys.executable, "-c",
         "import argparse,sys;from simulators.camera import command as c;"
         "p=argparse.ArgumentParser();c.configure(p);"
         "sys.exit(c.run(p.parse_args(sys.argv[1:])))",
         "--out", str(tmp_path), "--quick", "--seed", "5"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=True,
    )
    assert json.loads(sim.stdout)["clips"] == 5
    independent_clip(tmp_path, "independent_eval", 9, [
        {"floor": 7, "x": 500.0, "t": 2.0, "side": 4.0, "drag": 0.0, "vx": 0.5},
    ], seconds=6.0)
    out = subprocess.run(
        [sys.executable, "-m", "gatehouse.cli", "eval", "throwing", str(tmp_path), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=True,
    )
    s = json.loads(out.stdout)
    assert s["clips"] == 6
    assert set(s["recall_by_size"]) == {"ge16", "6to15", "lt6"}
    assert s["renderers"] == ["gatehouse-sim-1", "test-independent"]
    assert s["false_alarms"] == 0
    assert s["floor_within_one"] is not None and s["floor_within_one"] >= 0.9
    assert s["latency_s"]["p95"] <= 1.0
    assert s["fps_per_core"] > 0
    detected = sum(r["detected"] for r in s["recall_by_size_all_floors"].values())
    total = sum(r["throws"] for r in s["recall_by_size_all_floors"].values())
    assert detected >= total - 1
