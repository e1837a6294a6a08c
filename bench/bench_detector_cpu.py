"""CPU time per sample of each device kind's full detector chain (process CPU, not wall clock).

The same workload as ``bench/bench_detectors.py`` (the simulator's healthy telemetry;
``--warm`` samples fed untimed so learned models are past their warm-up, then ``--samples``
timed), but timed with ``time.process_time``, which moves much less than the wall clock on a
shared, loaded machine. Each kind is timed ``--repeat`` times and the minimum is reported,
with the bare loop (build the ``Reading``, call a no-op monitor) timed the same way.

To compare two checkouts, run it from each with ``PYTHONPATH`` set to that checkout,
alternating, and compare the chain / bare-loop ratios:

    PYTHONPATH=. .venv/bin/python bench/bench_detector_cpu.py [--samples 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detectors import NoOp, telemetry

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig
from edge.detectors.chain import DetectorChain


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--warm", type=int, default=12000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", nargs="*", default=None)
    args = parser.parse_args()
    result: dict[str, dict[str, float]] = {}
    for kind in args.kinds or sorted(load_profiles()):
        everything = telemetry(kind, args.warm + args.samples)
        warm, rows = everything[: args.warm], everything[args.warm:]
        bare = min(cpu_loop(kind, rows, None) for _ in range(args.repeat))
        full = min(cpu_loop(kind, rows, warm) for _ in range(args.repeat))
        result[kind] = {
            "samples": len(rows),
            "chain_cpu_us_per_sample": round(1e6 * full / len(rows), 2),
            "bare_cpu_us_per_sample": round(1e6 * bare / len(rows), 2),
            "ratio_chain_to_bare": round(full / bare, 2),
        }
    print(json.dumps({"bench": "detector_cpu", "per_kind": result}))
    for kind, r in result.items():
        print(f"{kind:12s} chain {r['chain_cpu_us_per_sample']:6.2f} us CPU/sample, bare loop "
              f"{r['bare_cpu_us_per_sample']:.2f} us ({r['ratio_chain_to_bare']}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
