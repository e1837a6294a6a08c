"""CPU time per sample of each device kind's full detector chain (process CPU, not wall clock).

The same workload as ``bench/bench_detectors.py`` (the simulator's healthy telemetry;
``--warm`` samples fed untimed so learned models are past their warm-up, then ``--samples``
timed), but timed with ``time.process_time``, which moves much less than the wall clock on a
shared, loaded machine. Each kind is timed ``--repeat`` times and the minimum is reported,
with the bare loop (build the ``Reading``, call a no-op monitor) timed the same way, and the
agent's path: the same readings through :class:`edge.detection.Detection` (a site of that one
device: the chain plus the registry, events and the detection-time counter).

To compare with another checkout (a ``git worktree`` of an older commit), ``--against DIR``
runs this script ``--rounds`` times from each tree in turn (``PYTHONPATH`` set to the tree,
alternating, so both see the same machine load) and reports each tree's minimum and the
ratio new / base:

    PYTHONPATH=. .venv/bin/python bench/bench_detector_cpu.py [--samples 20000] [--repeat 3]
    .venv/bin/python bench/bench_detector_cpu.py --against /tmp/base --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detectors import NoOp, telemetry

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig, SiteConfig
from edge.detection import Detection
from edge.detectors.chain import DetectorChain

REPO = Path(__file__).resolve().parent.parent


def cpu_loop(
    kind: str, rows: list[tuple[float, dict[str, float]]],
    warm: list[tuple[float, dict[str, float]]] | None,
) -> float:
    """CPU seconds to feed ``rows`` to the kind's chain (after ``warm``), or to a no-op."""
    profile = load_profiles()[kind]
    dev = DeviceConfig(id="b", kind=kind, params={"common_area": True})
    mon = DetectorChain.for_device(profile, dev) if warm is not None else NoOp()
    for ts, values in warm or []:
        mon.observe(Reading("s", kind, "b", ts, values))
    t0 = time.process_time()
    for ts, values in rows:
        mon.observe(Reading("s", kind, "b", ts, values))
    return time.process_time() - t0


def detection_loop(
    kind: str, rows: list[tuple[float, dict[str, float]]],
    warm: list[tuple[float, dict[str, float]]],
) -> float:
    """CPU seconds to feed ``rows`` to the agent's ``Detection`` of a one-device site."""
    dev = DeviceConfig(id="b", kind=kind, params={"common_area": True})
    detection = Detection(SiteConfig(site_id="s", devices=[dev]), load_profiles())
    for ts, values in warm:
        detection.observe(Reading("s", kind, "b", ts, values))
    t0 = time.process_time()
    for ts, values in rows:
        detection.observe(Reading("s", kind, "b", ts, values))
    return time.process_time() - t0


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Every kind's figures in this process (the tree ``PYTHONPATH`` names)."""
    result: dict[str, dict[str, float]] = {}
    for kind in args.kinds or sorted(load_profiles()):
        everything = telemetry(kind, args.warm + args.samples)
        warm, rows = everything[: args.warm], everything[args.warm:]
        bare = min(cpu_loop(kind, rows, None) for _ in range(args.repeat))
        full = min(cpu_loop(kind, rows, warm) for _ in range(args.repeat))
        agent = min(detection_loop(kind, rows, warm) for _ in range(args.repeat))
        result[kind] = {
            "samples": len(rows),
            "chain_cpu_us_per_sample": round(1e6 * full / len(rows), 2),
            "detection_cpu_us_per_sample": round(1e6 * agent / len(rows), 2),
            "bare_cpu_us_per_sample": round(1e6 * bare / len(rows), 2),
            "ratio_chain_to_bare": round(full / bare, 2),
        }
    return result


def compare(args: argparse.Namespace) -> int:
    """Alternate runs of this script from ``--against`` and from this tree."""
    trees = {"base": str(Path(args.against).resolve()), "new": str(REPO)}
    passed = ["--samples", str(args.samples), "--warm", str(args.warm),
              "--repeat", str(args.repeat)]
    if args.kinds:
        passed += ["--kinds", *args.kinds]
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=tree)
            out = subprocess.run([sys.executable, __file__, *passed], env=env, check=True,
                                 capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.splitlines()[0])["per_kind"])
    keys = ("chain_cpu_us_per_sample", "detection_cpu_us_per_sample", "bare_cpu_us_per_sample")
    result: dict[str, Any] = {}
    for kind in runs["new"][0]:
        best = {name: {k: min(r[kind][k] for r in runs[name]) for k in keys} for name in runs}
        result[kind] = {
            "base": best["base"], "new": best["new"],
            "chain_new_to_base": round(best["new"][keys[0]] / best["base"][keys[0]], 3),
            "detection_new_to_base": round(best["new"][keys[1]] / best["base"][keys[1]], 3),
        }
    print(json.dumps({"bench": "detector_cpu_compare", "against": trees["base"],
                      "rounds": args.rounds, "per_kind": result}))
    for kind, r in result.items():
        b, n = r["base"], r["new"]
        print(f"{kind:12s} chain {b[keys[0]]:6.2f} -> {n[keys[0]]:6.2f} us CPU/sample "
              f"({r['chain_new_to_base']}x); Detection {b[keys[1]]:6.2f} -> "
              f"{n[keys[1]]:6.2f} us ({r['detection_new_to_base']}x); bare loop "
              f"{b[keys[2]]:.2f} / {n[keys[2]]:.2f} us")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--warm", type=int, default=12000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", nargs="*", default=None)
    parser.add_argument("--against", default=None,
                        help="another checkout to compare with (alternating runs)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.against:
        return compare(args)
    result = measure(args)
    print(json.dumps({"bench": "detector_cpu", "per_kind": result}))
    for kind, r in result.items():
        print(f"{kind:12s} chain {r['chain_cpu_us_per_sample']:6.2f} us CPU/sample, Detection "
              f"{r['detection_cpu_us_per_sample']:6.2f} us, bare loop "
              f"{r['bare_cpu_us_per_sample']:.2f} us ({r['ratio_chain_to_bare']}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
