"""Benchmark: the edge agent's ingest throughput and the value of burst commits.

Two measurements, each against a baseline measured in the same run on the same machine:

* ``outbox``: events made durable per second when a burst of events is committed in one
  SQLite transaction (``put_many``, ``synchronous=FULL``, what the runner does) versus one
  transaction per event (the naive outbox);
* ``pipeline``: messages per second through the whole agent (validation, the profiles'
  real detectors, events to the outbox, MQTT acks) from an in-process message source,
  versus the same agent with no detectors (validation and bookkeeping only), so the ratio
  is the share of time the detectors take;
* ``stages``: CPU microseconds per message of the runner's own stages, each in a tight
  loop on one thread: validation (``Validator.validate``) and the TSDB output
  (``InfluxTelemetryWriter.write`` of bursts of ``--burst`` readings into a sink that only
  gzips the body as the HTTP sink does). The yardstick measured in the same run is the
  standard library's ``json.loads`` of the same payloads (the least any validation does),
  so ``*_per_json_loads`` ratios compare runs across a noisy machine;
* ``agent_cpu``: CPU microseconds per message of the whole process (every thread) while
  the agent drains a pre-filled queue: the whole pipeline with the TSDB output (gzip-only
  sink, no HTTP), against the same agent with no detectors and no outputs.

The messages are the simulator's offline telemetry of a two-building estate. Prints one
JSON object and a human summary. Run from the repository root:
``.venv/bin/python -m bench.bench_edge_pipeline [--messages 30000] [--events 3000]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, Reading, telemetry_topic
from device_profiles.schema import DeviceProfile
from device_profiles.site import (
    CloudConfig,
    DeviceConfig,
    EstateLayout,
    MqttConfig,
    SiteConfig,
    TsdbConfig,
)
from edge.detectors.base import DeviceMonitor, build_monitors
from edge.events import outbox_entry
from edge.mqtt_input import InboundMessage
from edge.outbox import Outbox
from edge.outputs.base import TelemetryOutput
from edge.outputs.tsdb import InfluxTelemetryWriter
from edge.runner import Agent, AgentOptions
from edge.validate import Validator
from simulators.models.offline import simulate_offline


class Source:
    """An in-process message source: the benchmark pushes, the agent acks."""

    def __init__(self, sink: Callable[[InboundMessage], None]) -> None:
        self.sink = sink
        self.connected = True
        self.last_error = ""
        self.mid = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def ack(self, message: InboundMessage) -> bool:
        return True

    def push(self, topic: str, payload: bytes) -> None:
        self.mid += 1
        self.sink(InboundMessage(topic, payload, self.mid, 1, 1, 0.0))


def estate(data_dir: Path) -> SiteConfig:
    return SiteConfig(
        site_id="bench", data_dir=str(data_dir),
        mqtt=MqttConfig(url="mqtt://127.0.0.1:1"), cloud=CloudConfig(url="http://127.0.0.1:1"),
        estate=EstateLayout(buildings=2, floors=18, cameras_per_building=0),
    )


def messages(site: SiteConfig, count: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    start = time.time() - 86400
    for device, sample in simulate_offline(site.all_devices(), start, start + 86400, seed=3):
        if sample.values:
            body = json.dumps({"ts": round(sample.ts, 3), **sample.values}).encode()
            out.append((telemetry_topic(site.site_id, device.kind, device.id), body))
            if len(out) >= count:
                break
    return out


def no_monitors(profile: DeviceProfile, device: DeviceConfig) -> list[DeviceMonitor]:
    return []


class GzipSink:
    """A TSDB line sink that does what the HTTP sink does before the network: gzip level 1."""

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0

    def send(self, body: bytes, lines: int) -> None:
        self.bytes += len(gzip.compress(body, compresslevel=1))
        self.lines += lines

    def close(self) -> None:
        pass


def tsdb_writer(site: SiteConfig, sink: GzipSink) -> InfluxTelemetryWriter:
    config = TsdbConfig(url="http://127.0.0.1:1", batch_size=5000)
    return InfluxTelemetryWriter(config, site, load_profiles(), sink=sink)


def run_pipeline(
    site: SiteConfig, msgs: list[tuple[str, bytes]], *, detect: bool,
    outputs: dict[str, TelemetryOutput] | None = None, prefill: bool = False,
) -> dict[str, Any]:
    """Drain ``msgs`` through an agent; ``prefill`` queues them all before it starts, so the
    CPU time measured is the agent's alone."""
    sources: list[Source] = []

    def make_source(sink: Callable[[InboundMessage], None]) -> Source:
        sources.append(Source(sink))
        return sources[0]

    agent = Agent(
        site, profiles=load_profiles(),
        options=AgentOptions(forward=False, reserve_bytes=0, low_water_bytes=0,
                             queue_max=len(msgs) + 10_000, receive_maximum=1000),
        outputs=outputs or {}, monitor_factory=build_monitors if detect else no_monitors,
        source_factory=make_source,
    )
    if prefill:
        for topic, payload in msgs:
            sources[0].push(topic, payload)
    cpu0 = time.process_time()
    agent.start()
    started = time.perf_counter()
    if not prefill:
        for topic, payload in msgs:
            sources[0].push(topic, payload)
    while agent.metrics.counter("mqtt_acks") < len(msgs):  # cheap: no store queries
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    stats = agent.stats()
    agent.stop()
    return {
        "messages": len(msgs), "seconds": round(elapsed, 3),
        "messages_per_s": round(len(msgs) / elapsed, 1), "events": stats["events"],
        "rejected": stats["rejected"], "readings": stats["readings"],
        "cpu_us_per_message": round(cpu / len(msgs) * 1e6, 2),
    }


def cpu_us_per_item(fn: Callable[[], object], items: int, runs: int) -> float:
    """Best of ``runs`` of ``fn``'s CPU time on this thread, in microseconds per item."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return round(best / items * 1e6, 3)


def run_stages(
    site: SiteConfig, msgs: Sequence[tuple[str, bytes]], *, burst: int, runs: int
) -> dict[str, Any]:
    """CPU per message of validation and of the TSDB output, and the json.loads yardstick."""
    validator = Validator(site, load_profiles())
    n = len(msgs)
    results = [validator.validate(topic, payload) for topic, payload in msgs]
    readings = [r for r in results if isinstance(r, Reading)]
    if len(readings) != n:
        raise SystemExit(f"{n - len(readings)} benchmark messages were not valid readings")
    bursts = [readings[i:i + burst] for i in range(0, n, burst)]
    sink = GzipSink()
    writer = tsdb_writer(site, sink)

    def write_all() -> None:
        for b in bursts:
            writer.write(b)

    json_us = cpu_us_per_item(lambda: [json.loads(p) for _, p in msgs], n, runs)
    validate_us = cpu_us_per_item(lambda: [validator.validate(t, p) for t, p in msgs], n, runs)
    write_us = cpu_us_per_item(write_all, n, runs)
    if sink.lines != n * runs:
        raise SystemExit(f"the writer encoded {sink.lines} lines, expected {n * runs}")
    return {
        "messages": n, "burst": burst, "runs": runs,
        "json_loads_us_per_message": json_us,
        "validate_us_per_message": validate_us,
        "tsdb_write_us_per_reading": write_us,
        "validate_per_json_loads": round(validate_us / json_us, 2),
        "tsdb_write_per_json_loads": round(write_us / json_us, 2),
    }


def sample_events(n: int) -> list[Event]:
    return [
        Event(event_id=f"bench-{i:08d}", site_id="bench", gateway_id="gw", device_id="p",
              kind="water_pump", type="pump.bearing_wear", severity="warning",
              state="raised", ts=1.0 + i, evidence={"value": 0.6, "threshold": 0.5})
        for i in range(n)
    ]


def run_outbox(directory: Path, n: int, burst: int) -> dict[str, Any]:
    entries = [outbox_entry(e) for e in sample_events(n)]
    batched = Outbox(directory / "batched.db")
    started = time.perf_counter()
    for i in range(0, n, burst):
        batched.put_many(entries[i:i + burst])
    batched_s = time.perf_counter() - started
    single = Outbox(directory / "single.db")
    started = time.perf_counter()
    for entry in entries:
        single.put_many([entry])
    single_s = time.perf_counter() - started
    return {
        "events": n, "burst": burst,
        "burst_commit_events_per_s": round(n / batched_s, 1),
        "per_event_commit_events_per_s": round(n / single_s, 1),
        "ratio": round(single_s / batched_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3, help="best of N for the stage loops")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outbox = run_outbox(root, args.events, args.burst)
        site = estate(root / "edge-a")
        msgs = messages(site, args.messages)
        stages = run_stages(site, msgs, burst=args.burst, runs=args.runs)
        full = run_pipeline(site, msgs, detect=True)
        bare = run_pipeline(estate(root / "edge-b"), msgs, detect=False)
        sink = GzipSink()
        site_c = estate(root / "edge-c")
        whole = run_pipeline(
            site_c, msgs, detect=True, outputs={"influxdb": tsdb_writer(site_c, sink)},
            prefill=True,
        )
        if sink.lines != len(msgs):
            raise SystemExit(f"the agent wrote {sink.lines} lines, expected {len(msgs)}")
        floor = run_pipeline(estate(root / "edge-d"), msgs, detect=False, prefill=True)
    share = 1 - full["messages_per_s"] / bare["messages_per_s"]
    result: dict[str, Any] = {
        "benchmark": "edge_pipeline",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "outbox": outbox,
        "pipeline": {
            "with_detectors": full, "validation_only_baseline": bare,
            "detector_share_of_time": round(share, 3),
        },
        "stages": stages,
        "agent_cpu": {
            "whole_pipeline_gzip_sink": whole,
            "no_detectors_no_outputs_baseline": floor,
            "ratio": round(whole["cpu_us_per_message"] / floor["cpu_us_per_message"], 2),
        },
    }
    print(json.dumps(result, indent=2))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\noutbox: {outbox['burst_commit_events_per_s']:.0f} events/s committed in bursts of "
        f"{args.burst} vs {outbox['per_event_commit_events_per_s']:.0f} events/s one "
        f"transaction each ({outbox['ratio']}x)\n"
        f"pipeline: {full['messages_per_s']:.0f} messages/s with the real detectors "
        f"({full['events']} events), {bare['messages_per_s']:.0f} messages/s validation only; "
        f"detectors take {share:.0%} of the time\n"
        f"stages (CPU us per message, best of {args.runs}): json.loads "
        f"{stages['json_loads_us_per_message']}, validate {stages['validate_us_per_message']} "
        f"(x{stages['validate_per_json_loads']}), TSDB write {stages['tsdb_write_us_per_reading']}"
        f" (x{stages['tsdb_write_per_json_loads']})\n"
        f"agent CPU per message, pre-filled queue: whole pipeline with the TSDB output "
        f"{whole['cpu_us_per_message']} us, no detectors and no outputs "
        f"{floor['cpu_us_per_message']} us"
    )


if __name__ == "__main__":
    main()
