"""Samples per second per core of each device kind's full detector chain.

For every kind, simulated healthy telemetry (the simulator's offline models) is generated
first; the chain is fed ``--warm`` samples untimed (so learned models are past their
warm-up, as on a running gateway), then ``--samples`` are timed, twice in the same run:
the baseline loop (build the ``Reading`` and call
a no-op monitor, the cost every pipeline pays) and the full chain of the kind's profile.
Prints one JSON object and a human summary. Single process, so the figure is per core.

    .venv/bin/python bench/bench_detectors.py [--samples 20000]
"""

from __future__ import annotations

import argparse
import json
import time

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig
from edge.detectors.base import Finding
from edge.detectors.chain import DetectorChain

START = 1_767_571_200.0


class NoOp:
    """The baseline monitor: takes the reading and returns nothing."""

    def observe(self, reading: Reading) -> list[Finding]:
        return []


def telemetry(kind: str, n: int) -> list[tuple[float, dict[str, float]]]:
    from simulators.models import simulate_offline

    dev = DeviceConfig(id=f"bench-{kind}", kind=kind, params={"common_area": True})
    out = []
    period = load_profiles()[kind].sampling_period
    for _d, s in simulate_offline([dev], START, START + period * (n + 10), [], seed=1):
        if s.values:
            out.append((s.ts, dict(s.values)))
        if len(out) >= n:
            break
    return out


def time_loop(
    kind: str,
    rows: list[tuple[float, dict[str, float]]],
    chain: bool,
    warm: list[tuple[float, dict[str, float]]] | None = None,
) -> float:
    """Seconds to feed ``rows``, after ``warm`` rows fed untimed (models past warm-up)."""
    profile = load_profiles()[kind]
    mon = DetectorChain.for_device(profile, DeviceConfig(id="b", kind=kind)) if chain else NoOp()
    for ts, values in warm or []:
        mon.observe(Reading("s", kind, "b", ts, values))
    t0 = time.perf_counter()
    for ts, values in rows:
        mon.observe(Reading("s", kind, "b", ts, values))
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument(
        "--warm", type=int, default=12000,
        help="samples fed untimed first, so learned models are past their warm-up",
    )
    args = parser.parse_args()
    result: dict[str, dict[str, float]] = {}
    for kind in sorted(load_profiles()):
        everything = telemetry(kind, args.warm + args.samples)
        warm, rows = everything[: args.warm], everything[args.warm :]
        base = min(time_loop(kind, rows, False) for _ in range(3))
        full = min(time_loop(kind, rows, True, warm) for _ in range(2))
        result[kind] = {
            "samples": len(rows),
            "baseline_per_s": round(len(rows) / base),
            "chain_per_s": round(len(rows) / full),
            "chain_us_per_sample": round(1e6 * full / len(rows), 2),
            "ratio_chain_to_baseline_time": round(full / base, 2),
        }
    print(json.dumps({"bench": "detectors", "per_kind": result}))
    for kind, r in result.items():
        print(f"{kind:12s} full chain {r['chain_per_s']:>8,} samples/s per core "
              f"({r['chain_us_per_sample']} us/sample, {r['ratio_chain_to_baseline_time']}x "
              f"the bare loop at {r['baseline_per_s']:,}/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
