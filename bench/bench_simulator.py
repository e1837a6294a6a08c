"""Simulator throughput: offline model stepping and MQTT publishing of a 5,000-device estate.

Each figure is a ratio against a baseline measured in the same run on the same machine:

* offline: samples/s of ``simulate_offline`` vs. a loop that only builds the same number of
  dicts of the same size (the cost floor of producing samples in Python);
* publish: telemetry messages/s of ``EstatePublisher`` (models stepped, JSON encoded,
  published at QoS 0 to a private Mosquitto) vs. bare paho publishing of a pre-encoded
  payload of the same size through the same broker (the cost floor of publishing).

Prints one JSON object and a human summary.
Run: ``.venv/bin/python -m bench.bench_simulator [--devices 5000] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from device_profiles.site import EstateLayout, SiteConfig


def estate_for(devices: int) -> EstateLayout:
    """A layout of about ``devices`` devices: 20 per building, plus gates."""
    buildings = max(1, devices // 20)
    return EstateLayout(
        buildings=min(buildings, 500),
        floors=18,
        elevators_per_building=2,
        pumps_per_building=2,
        meters_per_building=15,
        cameras_per_building=1,
        gates=min(100, max(1, devices - 20 * min(buildings, 500))),
    )


def bench_offline(site: SiteConfig, sim_seconds: float) -> dict[str, float]:
    from simulators.models import make_model, simulate_offline

    devices = site.all_devices()
    start = 1_700_438_400.0 + 8 * 3600
    t0 = time.perf_counter()
    for d in devices:
        make_model(d, 1)
    construct_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    fields = 0
    for _, sample in simulate_offline(devices, start, start + sim_seconds, seed=1):
        n += 1
        fields += len(sample.values)
    sim_time = time.perf_counter() - t0
    width = max(1, fields // max(n, 1))
    t0 = time.perf_counter()
    for i in range(n):
        _ = {f"f{j}": float(i + j) for j in range(width)}
    base_time = time.perf_counter() - t0
    return {
        "samples": n,
        "model_construction_s": construct_s,
        "samples_per_s": n / sim_time,
        "baseline_dicts_per_s": n / base_time,
        "ratio_to_baseline": (n / sim_time) / (n / base_time),
    }


class Counter:
    """An out-of-process subscriber (``mosquitto_sub``) that counts what the broker delivered,
    so confirming delivery does not take CPU from the publisher being measured."""

    def __init__(self, port: int, topic: str, out: Path) -> None:
        self.out = out
        self._fh = out.open("wb")
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "0"],
            stdout=self._fh,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

    @property
    def count(self) -> int:
        self._fh.flush()
        with self.out.open("rb") as fh:
            return sum(1 for _ in fh)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._fh.close()


def bench_baseline_publish(port: int, messages: int, payload: bytes) -> float:
    """Messages/s of bare paho QoS-0 publishing of one pre-encoded payload."""
    from simulators.mqtt_client import connect_client

    client = connect_client(f"mqtt://127.0.0.1:{port}", client_id_prefix="bench-baseline")
    t0 = time.perf_counter()
    info = None
    for i in range(messages):
        info = client.publish(f"gh/bench-base/elevator/d{i % 5000}/telemetry", payload, 0)
    if info is not None:
        info.wait_for_publish(30)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return messages / elapsed


def bench_publish(
    site: SiteConfig, port: int, seconds: float, speed: float, workdir: Path
) -> dict[str, Any]:
    from simulators.publisher import EstatePublisher

    counter = Counter(port, f"gh/{site.site_id}/+/+/telemetry", workdir / "received.txt")
    pub = EstatePublisher(
        site, f"mqtt://127.0.0.1:{port}", seed=1, speed=speed, duration=seconds, protocol="v311"
    )
    pub.start()
    pub.wait(seconds + 30)
    pub.stop()
    stats = pub.stats()
    deadline = time.monotonic() + 10
    while counter.count < stats["telemetry_published"] and time.monotonic() < deadline:
        time.sleep(0.1)
    received = counter.count
    counter.close()
    return {
        "telemetry_published": stats["telemetry_published"],
        "elapsed_s": stats["elapsed_s"],
        "messages_per_s": stats["telemetry_published"] / stats["elapsed_s"],
        "received_by_subscriber": received,
        "lag_s_at_end": stats["lag_s"],
        "publish_failed": stats["publish_failed"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10.0, help="wall seconds of publishing")
    ap.add_argument(
        "--speed",
        type=float,
        default=50.0,
        help="time acceleration while publishing (high enough to saturate)",
    )
    ap.add_argument("--offline-sim-seconds", type=float, default=300.0)
    args = ap.parse_args(argv)

    from tests.servers import mosquitto

    site = SiteConfig(site_id="bench-sim", estate=estate_for(args.devices))
    n_devices = len(site.all_devices())
    offline = bench_offline(site, args.offline_sim_seconds)
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as broker:
        published = bench_publish(site, broker.port, args.seconds, args.speed, Path(tmp))
        payload = json.dumps(
            {
                "ts": 1.7e9,
                "floor": 3,
                "at_landing": 1,
                "moving": 0,
                "door_open": 0,
                "load_kg": 75.2,
                "speed_mps": 0.0,
                "door_reversals": 0,
                "door_close_failures": 0,
                "leveling_error_mm": 1.2,
                "vibration_rms": 0.0213,
                "motor_current_a": 1.52,
                "trips": 0,
            },
            separators=(",", ":"),
        ).encode()
        baseline = bench_baseline_publish(
            broker.port, int(published["telemetry_published"]) or 10000, payload
        )
    published["baseline_raw_publish_per_s"] = baseline
    published["ratio_to_baseline"] = published["messages_per_s"] / baseline
    result = {
        "benchmark": "simulator",
        "devices": n_devices,
        "offline": offline,
        "publish": published,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=2))
    print(
        f"\n{n_devices} devices. Offline: {offline['samples_per_s']:,.0f} samples/s "
        f"({offline['ratio_to_baseline']:.2f}x the bare-dict baseline). "
        f"MQTT: {published['messages_per_s']:,.0f} telemetry msgs/s sustained over "
        f"{published['elapsed_s']:.1f} s ({published['ratio_to_baseline']:.2f}x bare paho "
        f"publishing at {baseline:,.0f}/s); subscriber received "
        f"{published['received_by_subscriber']:,} of {published['telemetry_published']:,.0f}.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
