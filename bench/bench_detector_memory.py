"""Memory of each device kind's detector state, per device, measured with ``tracemalloc``.

For every kind, ``--devices`` devices' monitors are built (as the agent builds them,
:func:`edge.detectors.base.build_monitors`) and fed the simulator's healthy telemetry for
``--hours`` hours of data time (each device its own model); the bytes ``tracemalloc`` sees
allocated by the monitors are reported per device right after construction and at each
checkpoint (10 minutes, the end, and ``--at`` minutes). Single process, no servers; the
telemetry is generated before measuring.

    .venv/bin/python bench/bench_detector_memory.py [--devices 20] [--hours 1.0]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig
from edge.detectors.base import DeviceMonitor, build_monitors

START = 1_767_571_200.0
KIB = 1024.0


def telemetry(
    kind: str, devices: list[DeviceConfig], seconds: float
) -> list[tuple[str, float, dict[str, float]]]:
    """Every healthy sample of ``devices`` over ``seconds`` of data time, in time order."""
    from simulators.models import simulate_offline

    return [
        (d.id, s.ts, dict(s.values))
        for d, s in simulate_offline(devices, START, START + seconds, [], seed=1, floors=18)
        if s.values
    ]


def warm_up_imports() -> None:
    """Fit each learned model once on toy data, so that the modules a first fit imports
    (numpy and the parts of it it loads lazily) are not counted as a device's state."""
    from edge.detectors.scorers import GaussianScorer, MewmaScorer, ZScorer

    for scorer in (MewmaScorer(("a", "b"), warmup=20, span=2),
                   GaussianScorer(("a", "b"), warmup=20), ZScorer(("a", "b"), warmup=20)):
        for i in range(25):
            x = {"a": float(i % 3), "b": float(i % 5)}
            scorer.learn_one(x)
            scorer.score_one(x)


def measure(kind: str, n: int, checkpoints: list[float]) -> dict[str, Any]:
    """KiB per device after construction and after each checkpoint (seconds of data)."""
    profile = load_profiles()[kind]
    devices = [
        DeviceConfig(id=f"m-{kind}-{i}", kind=kind, params={"common_area": i % 2 == 0})
        for i in range(n)
    ]
    rows = telemetry(kind, devices, max(checkpoints))
    warm_up_imports()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    monitors: dict[str, list[DeviceMonitor]] = {
        d.id: build_monitors(profile, d) for d in devices
    }
    gc.collect()
    built = tracemalloc.get_traced_memory()[0] - before
    out: dict[str, Any] = {"devices": n, "built_kib": round(built / n / KIB, 2)}
    i = 0
    for stop in checkpoints:
        while i < len(rows) and rows[i][1] < START + stop:
            device_id, ts, values = rows[i]
            reading = Reading("s", kind, device_id, ts, values)
            for m in monitors[device_id]:
                m.observe(reading)
            i += 1
        gc.collect()
        # Readings and findings are garbage by now; what is left is the monitors' state.
        used = tracemalloc.get_traced_memory()[0] - before
        out[f"after_{stop / 60:g}_min_kib"] = round(used / n / KIB, 2)
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    top = snapshot.statistics("lineno")[:5]
    out["top_lines"] = [
        f"{s.traceback[0].filename.split('/')[-1]}:{s.traceback[0].lineno} "
        f"{s.size / n / KIB:.2f} KiB/device"
        for s in top
    ]
    del monitors
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--kinds", nargs="*", default=None)
    parser.add_argument("--at", nargs="*", type=float, default=[],
                        help="more checkpoints, in minutes of data")
    args = parser.parse_args()
    total = args.hours * 3600.0
    checkpoints = sorted({min(600.0, total), total, *(60.0 * m for m in args.at if m > 0)})
    result = {
        kind: measure(kind, args.devices, checkpoints)
        for kind in (args.kinds or sorted(load_profiles()))
    }
    print(json.dumps({"bench": "detector_memory", "per_kind": result}))
    for kind, r in result.items():
        marks = ", ".join(f"{k[6:-4].replace('_', ' ')} {v:.1f}" for k, v in r.items()
                          if k.startswith("after_"))
        print(f"{kind:12s} KiB per device: built {r['built_kib']:.1f}, {marks}")
        for line in r["top_lines"]:
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
