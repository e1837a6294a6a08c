"""Benchmark: the edge agent's ingest throughput and the value of burst commits.

Two measurements, each against a baseline measured in the same run on the same machine:

* ``outbox``: events made durable per second when a burst of events is committed in one
  SQLite transaction (``put_many``, ``synchronous=FULL``, what the runner does) versus one
  transaction per event (the naive outbox);
* ``pipeline``: messages per second through the whole agent (validation, the profiles'
  real detectors, events to the outbox, MQTT acks) from an in-process message source,
  versus the same agent with no detectors (validation and bookkeeping only), so the ratio
  is the share of time the detectors take.

The messages are the simulator's offline telemetry of a two-building estate. Prints one
JSON object and a human summary. Run from the repository root:
``.venv/bin/python -m bench.bench_edge_pipeline [--messages 30000] [--events 3000]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, telemetry_topic
from device_profiles.schema import DeviceProfile
from device_profiles.site import CloudConfig, DeviceConfig, EstateLayout, MqttConfig, SiteConfig
from edge.detectors.base import DeviceMonitor, build_monitors
from edge.events import outbox_entry
from edge.mqtt_input import InboundMessage
from edge.outbox import Outbox
from edge.runner import Agent, AgentOptions
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


def run_pipeline(
    site: SiteConfig, msgs: list[tuple[str, bytes]], *, detect: bool
) -> dict[str, Any]:
    sources: list[Source] = []

    def make_source(sink: Callable[[InboundMessage], None]) -> Source:
        sources.append(Source(sink))
        return sources[0]

    agent = Agent(
        site, profiles=load_profiles(),
        options=AgentOptions(forward=False, reserve_bytes=0, low_water_bytes=0,
                             queue_max=len(msgs) + 10_000, receive_maximum=1000),
        outputs={}, monitor_factory=build_monitors if detect else no_monitors,
        source_factory=make_source,
    )
    agent.start()
    started = time.perf_counter()
    for topic, payload in msgs:
        sources[0].push(topic, payload)
    while agent.stats()["acked"] < len(msgs):
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    stats = agent.stats()
    agent.stop()
    return {
        "messages": len(msgs), "seconds": round(elapsed, 3),
        "messages_per_s": round(len(msgs) / elapsed, 1), "events": stats["events"],
        "rejected": stats["rejected"],
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outbox = run_outbox(root, args.events, args.burst)
        site = estate(root / "edge-a")
        msgs = messages(site, args.messages)
        full = run_pipeline(site, msgs, detect=True)
        bare = run_pipeline(estate(root / "edge-b"), msgs, detect=False)
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
    }
    print(json.dumps(result, indent=2))
    print(
        f"\noutbox: {outbox['burst_commit_events_per_s']:.0f} events/s committed in bursts of "
        f"{args.burst} vs {outbox['per_event_commit_events_per_s']:.0f} events/s one "
        f"transaction each ({outbox['ratio']}x)\n"
        f"pipeline: {full['messages_per_s']:.0f} messages/s with the real detectors "
        f"({full['events']} events), {bare['messages_per_s']:.0f} messages/s validation only; "
        f"detectors take {share:.0%} of the time"
    )


if __name__ == "__main__":
    main()
