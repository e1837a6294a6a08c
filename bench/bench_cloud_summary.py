"""CPU time per reading of the cloud-summary output's ``write`` (folding readings into minutes).

2,000 simulated devices (1,000 smart meters every 10 s, 1,000 water pumps every second) for
``--seconds`` of data, written in bursts of 500 as the agent does, to an output whose
transport discards what it is given (nothing is posted: only the folding is timed). The
minimum of ``--repeat`` runs, in process CPU time. To compare two checkouts, run it from each
with ``PYTHONPATH`` set to that checkout.

    PYTHONPATH=. .venv/bin/python bench/bench_cloud_summary.py [--seconds 120] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from edge.outputs.cloud_summary import CloudSummaryOutput

START = 1_767_571_200.0


class NullTransport:
    def post(self, site_id: str, items: Sequence[bytes]) -> None:
        return None

    def close(self) -> None:
        return None


def readings(seconds: float) -> list[Reading]:
    profiles = load_profiles()
    rng = random.Random(1)
    out = []
    for kind, period in (("smart_meter", 10.0), ("water_pump", 1.0)):
        names = [n for n, f in profiles[kind].fields.items() if f.type != "bool"]
        for d in range(1000):
            for k in range(int(seconds / period)):
                values = {n: rng.uniform(0.0, 10.0) for n in names}
                out.append(Reading("s", kind, f"{kind}-{d}", START + k * period + d * 1e-3,
                                   values))
    out.sort(key=lambda r: r.ts)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = readings(args.seconds)
    fields = {k: frozenset(p.fields) for k, p in load_profiles().items()}
    best = float("inf")
    for _ in range(args.repeat):
        output = CloudSummaryOutput("s", NullTransport(), fields=fields, start_thread=False,
                                    monotonic=lambda: 0.0)
        t0 = time.process_time()
        for i in range(0, len(rows), 500):
            output.write(rows[i:i + 500])
        best = min(best, time.process_time() - t0)
    us = 1e6 * best / len(rows)
    print(json.dumps({"bench": "cloud_summary", "readings": len(rows),
                      "cpu_us_per_reading": round(us, 2)}))
    print(f"{len(rows):,} readings: {us:.2f} us CPU per reading", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
