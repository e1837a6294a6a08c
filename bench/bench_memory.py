"""Memory benchmark: the edge agent's resident memory with 5,000 devices over a long run.

Real processes: Mosquitto, VictoriaMetrics, ``gatehouse cloud serve`` (SQLite),
``gatehouse edge`` (whole pipeline: validation, every detector, outbox, TSDB writer,
forwarder) and a publisher of a 498-building estate (996 elevators, 996 pumps, 2,490 smart
meters, 498 cameras, 20 access gates: 5,000 devices, about 1,800 messages/s) in real time
for ``--duration`` seconds. The default publisher (``--publisher replay``, this file's
``publish`` sub-command) loops over 30 samples of each device's own simulator model with
current timestamps; ``--publisher simulator`` runs ``gatehouse simulate estate`` instead,
which steps every model live and on a small shared machine cannot keep 5,000 devices in
real time (the agent then sees devices fall silent, see the record).

The agent's ``VmRSS`` is sampled every ``--sample`` seconds. The baseline, measured in the
same run, is the agent's memory once started with every monitor of the 5,000 devices
built but before any message arrives. Reported: the baseline, the memory after the first
fifth of the run (warm), at the end and at its peak, the growth from warm to the end and
the slope over the second half and over the last third (MB per minute; on a run longer
than the pump model's hour of warm-up, the last third is the steady state), whether the
agent kept up (messages received against messages published, queue depth), the agent's
CPU (share of one core, microseconds per message) and the write requests the TSDB got
per second.

Some detectors keep bounded per-device state that fills for longer than a short run (the
pump model's warm-up: an hour of running samples; the pumps' trend windows: 30 minutes);
its growth is bounded, and ``bench/bench_detector_memory.py`` measures it per device kind.
The agent imports numpy only when something needs it (a learned model's fit after its
warm-up, the TSDB writer's client library): the result says whether it was loaded at the
end (``numpy_loaded``). ``--no-tsdb`` runs the same estate without the TSDB output.
``--pump-warmup N`` makes the pump models learn from N running samples instead of an hour,
so a short run also shows the fitted state.

    .venv/bin/python bench/bench_memory.py [--duration 600] [--sample 10] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import device_profiles
from bench.common import (
    REPO,
    BenchError,
    cloud_process,
    cpu_seconds,
    edge_process,
    gatehouse,
    provision,
    report,
    rss_bytes,
    spawn,
    wait_connected,
    write_site,
)
from device_profiles.site import (
    CloudConfig,
    EstateLayout,
    MqttConfig,
    SiteConfig,
    TsdbConfig,
)
from tests.servers import mosquitto
from tests.servers_tsdb import victoria_metrics

MB = 1024 * 1024
PROGRESS_EVERY = 60.0
"""Seconds between progress lines on stderr."""
CYCLE = 30
"""Samples of each device's own model that the replay publisher loops over."""


def layout(buildings: int, gates: int) -> EstateLayout:
    return EstateLayout(buildings=buildings, floors=18, elevators_per_building=2,
                        pumps_per_building=2, meters_per_building=5, cameras_per_building=1,
                        gates=gates)


def numpy_loaded(pid: int) -> bool:
    """Whether the process has numpy's compiled core mapped (it imported numpy)."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            return any("_multiarray_umath" in line for line in maps)
    except OSError:
        return False


def slope_mb_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time (MB per minute)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mt) * (r - mr) for t, r in points)
    return cov / var * 60 / MB


def publish_main(args: argparse.Namespace) -> int:
    """The replay publisher: every device in real time from a short loop of its own samples.

    Each device's model is run by the simulator for ``CYCLE`` sampling periods up front;
    the publisher then sends those values in a loop at the profile's period with current
    timestamps (QoS 1). Far cheaper per message than stepping 5,000 models live, so on a
    small shared machine the publisher is not what limits the rate.
    """
    from bench.common import connect, mqtt_client
    from device_profiles.loader import load_profiles
    from device_profiles.messages import telemetry_topic
    from device_profiles.site import load_site
    from simulators.models.offline import simulate_offline

    site = load_site(args.site)
    devices = site.all_devices()
    profiles = load_profiles()
    start = time.time() - 86400
    cycles: dict[str, list[dict[str, float]]] = {d.id: [] for d in devices}
    for kind in sorted({d.kind for d in devices}):
        group = [d for d in devices if d.kind == kind]
        horizon = CYCLE * float(profiles[kind].sampling_period)
        for device, sample in simulate_offline(group, start, start + horizon, seed=7,
                                               floors=18):
            loop = cycles[device.id]
            if sample.values and len(loop) < CYCLE:
                loop.append(dict(sample.values))
    client = mqtt_client(f"bench-memory-pub-{time.monotonic_ns()}")
    connect(client, args.port)
    rng = random.Random(3)
    now = time.time()
    heap = [(now + rng.random() * float(profiles[d.kind].sampling_period), i)
            for i, d in enumerate(devices) if cycles[d.id]]
    heapq.heapify(heap)
    topics = [telemetry_topic(site.site_id, d.kind, d.id) for d in devices]
    periods = [float(profiles[d.kind].sampling_period) for d in devices]
    counters = [0] * len(devices)
    published = 0
    end = now + args.duration
    while time.time() < end:
        t = time.time()
        while heap and heap[0][0] <= t:
            due, i = heapq.heapreplace(heap, (heap[0][0] + periods[heap[0][1]], heap[0][1]))
            loop = cycles[devices[i].id]
            values = loop[counters[i] % len(loop)]
            counters[i] += 1
            body = json.dumps({"ts": round(due, 3), **values}, separators=(",", ":"))
            client.publish(topics[i], body, qos=1)
            published += 1
        time.sleep(max(0.0, min(0.01, heap[0][0] - time.time())) if heap else 0.01)
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"telemetry_published": published}))
    return 0


def tsdb_writes(url: str) -> float:
    """Write requests VictoriaMetrics has answered (its own ``/metrics``); 0 without it."""
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("vm_http_requests_total{") and "/write" in line
    )


def profiles_with_pump_warmup(folder: Path, warmup: int) -> Path:
    """A copy of the shipped profiles whose pump model learns from ``warmup`` running
    samples instead of the profile's hour (so a short run reaches the fitted state)."""
    folder.mkdir(parents=True, exist_ok=True)
    shipped = Path(device_profiles.__file__).parent
    for path in sorted(shipped.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind") == "water_pump":
            for det in doc["detectors"]:
                if det["name"] == "pump_model":
                    det.setdefault("params", {})["warmup"] = warmup
        (folder / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def run(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gh-memory-")))
        broker = stack.enter_context(mosquitto(tmp / "mqtt"))
        vm = stack.enter_context(victoria_metrics(tmp / "vm"))
        db_url = f"sqlite:///{tmp / 'cloud.db'}"
        site = SiteConfig(
            site_id="memory", gateway_id="gw-memory", data_dir=str(tmp / "edge-data"),
            mqtt=MqttConfig(url=broker.url, client_id="bench-memory-edge"),
            cloud=CloudConfig(url="http://127.0.0.1:1"),
            tsdb=None if args.no_tsdb else TsdbConfig(url=vm.url),
            estate=layout(args.buildings, args.gates),
            profiles_dir=None if args.pump_warmup is None else str(
                profiles_with_pump_warmup(tmp / "profiles", args.pump_warmup)),
        )
        devices = site.all_devices()
        site.cloud.token = provision(db_url, {site.site_id: site})[site.site_id]
        base, _ = stack.enter_context(cloud_process(db_url, tmp / "cloud"))
        site.cloud.url = base
        edge = stack.enter_context(edge_process(site, tmp / "edge"))
        wait_connected(edge)
        time.sleep(2.0)
        baseline = rss_bytes(edge.process.pid)
        numpy_at_start = numpy_loaded(edge.process.pid)
        site_file = str(write_site(site, tmp / "site.yaml"))
        if args.publisher == "simulator":
            cmd = gatehouse(
                "--log-level", "WARNING", "simulate", "estate", "--config", site_file,
                "--broker", broker.url, "--qos", "1", "--duration", str(args.duration),
                "--stats-every", "0", "--seed", "7",
            )
        else:
            cmd = [sys.executable, str(REPO / "bench" / "bench_memory.py"), "publish",
                   "--site", site_file, "--port", str(broker.port),
                   "--duration", str(args.duration)]
        cpu_start, writes_start = cpu_seconds(edge.process.pid), tsdb_writes(vm.url)
        sim = spawn("publisher", cmd, tmp)
        samples: list[tuple[float, int]] = []
        received: list[tuple[float, float]] = []
        queue_peak = 0.0
        started = time.monotonic()
        next_progress = 0.0
        print(f"memory run: {args.duration / 60:.0f} min, RSS sampled every {args.sample:g} s "
              "(a progress line a minute)", file=sys.stderr, flush=True)
        while sim.alive():
            if not edge.process.alive():
                raise BenchError(f"the agent died: {edge.process.tail()}")
            t = time.monotonic() - started
            samples.append((t, rss_bytes(edge.process.pid)))
            now = edge.metrics()
            received.append((t, now.get("messages_received", 0.0)))
            queue_peak = max(queue_peak, now.get("queue_depth", 0.0))
            if t >= next_progress:
                next_progress += PROGRESS_EVERY
                print(f"  {t / 60:5.1f} min: RSS {samples[-1][1] / MB:6.1f} MiB, "
                      f"{received[-1][1]:,.0f} messages received, "
                      f"{now.get('model_fits', 0.0):,.0f} models fitted", file=sys.stderr,
                      flush=True)
            time.sleep(args.sample)
            if t > args.duration + 300:
                sim.stop()
                raise BenchError("the simulator did not stop by itself")
        time.sleep(3.0)
        final = edge.metrics()
        cpu_used = cpu_seconds(edge.process.pid) - cpu_start
        writes = tsdb_writes(vm.url) - writes_start
        samples.append((time.monotonic() - started, rss_bytes(edge.process.pid)))
        numpy_at_end = numpy_loaded(edge.process.pid)
        stats_lines = [line for line in sim.tail(20000).splitlines() if line.startswith("{")]
        sim_stats: dict[str, Any] = json.loads(stats_lines[-1]) if stats_lines else {}
    # The simulator starts publishing after it has built its 5,000 models: the run is
    # measured from the agent's first message.
    first = next((t for t, n in received if n > 0), 0.0)
    run_samples = [(t, r) for t, r in samples if t >= first]
    span = run_samples[-1][0] - run_samples[0][0] if run_samples else 0.0
    warm_t = run_samples[0][0] + span / 5 if run_samples else 0.0
    warm = next((r for t, r in run_samples if t >= warm_t), baseline)
    second_half = [(t, r) for t, r in run_samples if t >= run_samples[0][0] + span / 2]
    last_third = [(t, r) for t, r in run_samples if t >= run_samples[0][0] + span * 2 / 3]
    end = run_samples[-1][1] if run_samples else baseline
    published = float(sim_stats.get("telemetry_published", 0.0)) + float(
        sim_stats.get("events_published", 0.0))
    got = final.get("messages_received", 0.0)
    return {
        "devices": len(devices),
        "pump_model_warmup_samples": args.pump_warmup or "profile (3,600)",
        "tsdb_output": not args.no_tsdb,
        "numpy_loaded": {"idle": numpy_at_start, "end": numpy_at_end},
        "kinds": {k: sum(d.kind == k for d in devices) for k in sorted({d.kind for d in devices})},
        "duration_s": round(span, 1),
        "published": int(published),
        "published_per_s": round(published / span, 1) if span else 0.0,
        "agent_received": int(got),
        "agent_rejected": int(final.get("rejects", 0)),
        "agent_queue_at_end": int(final.get("queue_depth", 0)),
        "agent_queue_peak_sampled": int(queue_peak),
        "models_fitted": int(final.get("model_fits", 0)),
        "model_fit_seconds": round(final.get("model_fit_seconds", 0.0), 1),
        "events_raised": int(final.get("events", 0)),
        "agent_cpu": {
            "seconds": round(cpu_used, 1),
            "percent_of_one_core": round(100 * cpu_used / span, 1) if span else 0.0,
            "us_per_message": round(1e6 * cpu_used / got, 1) if got else 0.0,
        },
        "tsdb_write_requests_per_s": round(writes / span, 1) if span else 0.0,
        "rss_mb": {
            "baseline_idle_all_monitors_built": round(baseline / MB, 1),
            "warm": round(warm / MB, 1), "end": round(end / MB, 1),
            "peak": round(max(r for _, r in run_samples) / MB, 1) if run_samples else 0.0,
        },
        "growth_warm_to_end_mb": round((end - warm) / MB, 1),
        "slope_second_half_mb_per_min": round(slope_mb_per_min(second_half), 3),
        "slope_last_third_mb_per_min": round(slope_mb_per_min(last_third), 3),
        "ratio_end_to_baseline": round(end / baseline, 2),
        "series": [(round(t, 1), round(r / MB, 1)) for t, r in samples],
    }


def summary(r: dict[str, Any]) -> str:
    m = r["rss_mb"]
    return (
        f"edge agent with {r['devices']} devices, {r['duration_s']:.0f} s at "
        f"{r['published_per_s']:.0f} msg/s ({r['agent_received']} of {r['published']} received,"
        f" queue {r['agent_queue_at_end']} at the end, {r['agent_queue_peak_sampled']} at most"
        f" when sampled; {r['models_fitted']} models fitted in {r['model_fit_seconds']} s):\n"
        f"  RSS idle with all monitors built {m['baseline_idle_all_monitors_built']:.0f} MB, "
        f"warm {m['warm']:.0f} MB, end {m['end']:.0f} MB, peak {m['peak']:.0f} MB "
        f"(end/idle {r['ratio_end_to_baseline']}x)\n"
        f"  agent CPU {r['agent_cpu']['percent_of_one_core']:.1f} % of a core "
        f"({r['agent_cpu']['us_per_message']:.0f} us/msg), "
        f"{r['tsdb_write_requests_per_s']:.1f} TSDB write requests/s\n"
        f"  growth warm->end {r['growth_warm_to_end_mb']:+.1f} MB, second-half slope "
        f"{r['slope_second_half_mb_per_min']:+.2f} MB/min, last third "
        f"{r['slope_last_third_mb_per_min']:+.2f} MB/min; TSDB output "
        f"{'on' if r['tsdb_output'] else 'off'}, numpy loaded at the end: "
        f"{r['numpy_loaded']['end']}"
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["publish"]:
        p = argparse.ArgumentParser(prog="bench_memory.py publish")
        p.add_argument("--site", type=Path, required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--duration", type=float, required=True)
        return publish_main(p.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--publisher", choices=["replay", "simulator"], default="replay",
                        help="replay: loops of each device's simulated samples (cheap); "
                        "simulator: gatehouse simulate estate (steps every model live)")
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--buildings", type=int, default=498)
    parser.add_argument("--gates", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="20 s, 40 buildings (the tests)")
    parser.add_argument("--no-tsdb", action="store_true",
                        help="no TSDB output (no influxdb-client in the agent)")
    parser.add_argument("--pump-warmup", type=int, default=None, metavar="SAMPLES",
                        help="learn the pump model from this many running samples instead "
                             "of the profile's 3,600, so a short run reaches the fitted "
                             "state (the only change to the profiles)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.sample, args.buildings, args.gates = 20.0, 1.0, 40, 4
    result = run(args)
    report("memory", result, summary(result), args.json_out)
    return 0 if result["agent_rejected"] == 0 and result["agent_received"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
