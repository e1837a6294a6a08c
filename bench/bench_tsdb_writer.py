"""Benchmark: the telemetry writer's throughput against influxdb-client's Point API.

Both sides get the same simulated readings (the simulator's offline models: pumps,
elevators, meters, gates, cameras). The baseline is what one would write first with
influxdb-client: a ``Point`` per reading, serialised by the client. Measured in the same
run, on the same machine:

* ``encode``: readings -> line protocol, in memory;
* ``write``: readings -> a real VictoriaMetrics (``/api/v2/write``, gzip, batches of 5000),
  until the database has acknowledged every request; the benchmark checks that both sides
  stored the same number of samples.

Prints one JSON object and a human summary. Run from the repository root:
``.venv/bin/python -m bench.bench_tsdb_writer [--readings 100000]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from device_profiles.site import EstateLayout, SiteConfig, TsdbConfig
from edge.outputs.tsdb import InfluxTelemetryWriter
from simulators.models.offline import simulate_offline


def simulated_readings(site: SiteConfig, count: int) -> list[Reading]:
    out: list[Reading] = []
    start = 1_790_000_000.0
    for device, sample in simulate_offline(site.all_devices(), start, start + 86400, seed=1):
        if sample.values:
            out.append(Reading(site.site_id, device.kind, device.id, sample.ts, sample.values))
            if len(out) >= count:
                break
    return out


def point_lines(site: SiteConfig, readings: Sequence[Reading]) -> list[str]:
    """The baseline: one influxdb-client ``Point`` per reading."""
    from influxdb_client.client.write.point import Point
    from influxdb_client.domain.write_precision import WritePrecision

    buildings = {d.id: d.building for d in site.all_devices()}
    profiles = load_profiles()
    out = []
    point: Any = Point  # influxdb-client's Point is untyped
    for r in readings:
        p = point(r.kind).tag("site", r.site_id).tag("device", r.device_id)
        p = p.tag("building", buildings.get(r.device_id, ""))
        types = profiles[r.kind].fields
        for name, value in r.values.items():
            kind = types[name].type
            p = p.field(
                name, bool(value) if kind == "bool" else int(value) if kind == "int" else value
            )
        p = p.time(int(r.ts * 1000), WritePrecision.MS)
        out.append(p.to_line_protocol())
    return out


def influx_rows(vm: Any) -> int:
    """Samples VictoriaMetrics has ingested over the Influx protocol so far."""
    for line in vm.get_text("/metrics").splitlines():
        if line.startswith('vm_rows_inserted_total{type="influx"}'):
            return int(float(line.split()[-1]))
    return 0


def best_of(
    runs: int, fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter
) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def encode_bursts(writer: InfluxTelemetryWriter, readings: Sequence[Reading], burst: int) -> int:
    """What the agent does per burst before the network: encode, then one join per burst
    (with a writer older than ``encode_readings``: ``encode_reading`` one by one, as its
    ``write`` did, so that the benchmark can measure the code before the change too)."""
    size = 0
    encode = getattr(writer, "encode_readings", None)
    for i in range(0, len(readings), burst):
        chunk = readings[i : i + burst]
        if encode is not None:
            lines, _ = encode(chunk)
        else:
            lines = [x for x in (writer.encode_reading(r) for r in chunk) if x is not None]
        size += len("\n".join(lines).encode())
    return size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="telemetry writer benchmark")
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    site = SiteConfig(site_id="bench", estate=EstateLayout(buildings=4, floors=20))
    readings = simulated_readings(site, args.readings)
    n = len(readings)
    profiles = load_profiles()
    batch = 5000

    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    from tests.servers_tsdb import VictoriaMetrics

    with tempfile.TemporaryDirectory() as tmp:
        vm = VictoriaMetrics(workdir=Path(tmp))
        vm.start()
        try:
            config = TsdbConfig(url=vm.url, batch_size=batch)
            writer = InfluxTelemetryWriter(config, site, profiles)
            ours_encode = best_of(args.runs, lambda: [writer.encode_reading(r) for r in readings])
            base_encode = best_of(args.runs, lambda: point_lines(site, readings))
            # CPU time on this thread (steadier than wall-clock time on a shared machine):
            # the per-reading encoder, the burst encoder the agent uses, and the Point API
            cpu_one = best_of(args.runs, lambda: [writer.encode_reading(r) for r in readings],
                              time.thread_time)
            cpu_burst = best_of(args.runs, lambda: encode_bursts(writer, readings, 500),
                                time.thread_time)
            cpu_point = best_of(args.runs, lambda: point_lines(site, readings), time.thread_time)
            fields = sum(len(r.values) for r in readings)
            before = influx_rows(vm)
            ours_write = best_of(args.runs, lambda: writer.write(readings))
            ours_stored = influx_rows(vm) - before
            client = InfluxDBClient(url=vm.url, token="", org="gatehouse", enable_gzip=True)
            api = client.write_api(write_options=SYNCHRONOUS)

            def baseline_write() -> None:
                lines = point_lines(site, readings)
                for i in range(0, n, batch):
                    api.write(bucket="telemetry", record=lines[i : i + batch])

            before = influx_rows(vm)
            base_write = best_of(args.runs, baseline_write)
            base_stored = influx_rows(vm) - before
            if ours_stored != base_stored or ours_stored != fields * args.runs:
                raise SystemExit(
                    f"stored samples differ: ours {ours_stored}, baseline {base_stored}, "
                    f"expected {fields * args.runs}"
                )
            writer.close()
            client.close()  # type: ignore[no-untyped-call]
        finally:
            vm.stop()

    result = {
        "benchmark": "tsdb_writer",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
        "readings": n,
        "fields_per_reading": round(sum(len(r.values) for r in readings) / n, 2),
        "encode_readings_per_s": round(n / ours_encode),
        "baseline_encode_readings_per_s": round(n / base_encode),
        "encode_speedup": round(base_encode / ours_encode, 2),
        "write_readings_per_s": round(n / ours_write),
        "baseline_write_readings_per_s": round(n / base_write),
        "write_speedup": round(base_write / ours_write, 2),
        "cpu_us_per_reading": {
            "encode_reading": round(cpu_one / n * 1e6, 3),
            "encode_readings_bursts_of_500_joined": round(cpu_burst / n * 1e6, 3),
            "point_api_baseline": round(cpu_point / n * 1e6, 3),
        },
    }
    print(json.dumps(result))
    print(
        f"\n{n} readings ({result['fields_per_reading']} fields each), best of {args.runs}:\n"
        f"  encode: {result['encode_readings_per_s']:>9,} readings/s  "
        f"(Point API {result['baseline_encode_readings_per_s']:,}/s, "
        f"x{result['encode_speedup']})\n"
        f"  write to VictoriaMetrics: {result['write_readings_per_s']:>9,} readings/s  "
        f"(Point API {result['baseline_write_readings_per_s']:,}/s, x{result['write_speedup']})\n"
        f"  CPU us per reading: encode_reading {cpu_one / n * 1e6:.2f}, burst encoder + join "
        f"{cpu_burst / n * 1e6:.2f}, Point API {cpu_point / n * 1e6:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
