"""Latency benchmark: from the first faulty reading leaving the simulator to its work order.

Real parts as separate processes: Mosquitto, VictoriaMetrics, ``gatehouse cloud serve``
(PostgreSQL, two workers; SQLite with ``--sqlite``), ``gatehouse edge`` with its whole
pipeline, and a load publisher (this file's ``publish`` sub-command). The publisher
simulates ``--pumps`` water pumps at their profile's 1 Hz (2,000 pumps: 2,000 messages/s of
background load, QoS 1) with values from the simulator's pump model plus 1 % noise; after a
warm-up it injects one fault on each of ``--faults`` distinct pumps, spread evenly over
``--fault-window`` seconds: from then on that pump's pressure reads 9 bar (its profile's
``warn_high`` is 6). It records the wall-clock time just before publishing each pump's first
faulty reading.

The out-of-range detector has no minimum duration, so the first faulty reading raises
``pump.sensor_out_of_range``; the cloud opens a work order (P3). The benchmark watches the
cloud API's live stream (``GET /api/v1/stream``, on the product's defaults: woken by the
commit through PostgreSQL ``NOTIFY``, with its 0.5 s fallback poll; ``--stream-poll``
overrides the poll) and records when each order becomes visible. Reported:

* ``visible``: first faulty reading published -> order seen through the API (what a user sees);
* ``recorded``: first faulty reading published -> the cloud records the new order (the
  server's clock when it wrote the change the stream serves; the rest of ``visible`` is the
  stream's poll and delivery);
* baseline in the same run and under the same load: ``--direct`` single-event batches posted
  straight to ``POST /api/v1/events`` (a gateway that skipped MQTT and the edge) -> order
  seen through the same stream; the ratio is the edge's share.

Detectors that by design wait (``min_duration_s``: the pump model 5 s, the meter's power
quality 30 s, trends need ``min_points``) add exactly that wait; it is not measured here.

    .venv/bin/python bench/bench_latency.py [--pumps 2000] [--faults 1000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import (
    REPO,
    BenchError,
    EdgeProcess,
    admin_login,
    cloud_process,
    connect,
    distribution_ms,
    edge_process,
    mqtt_client,
    provision,
    report,
    spawn,
    wait_connected,
    write_site,
)
from cloud.settings import Settings
from device_profiles.messages import Event, EventBatch, make_event_id, telemetry_topic
from device_profiles.site import (
    CloudConfig,
    DeviceConfig,
    MqttConfig,
    SiteConfig,
    TsdbConfig,
    load_site,
)
from tests.servers import mosquitto, postgres_database
from tests.servers_tsdb import victoria_metrics

EVENT_TYPE = "pump.sensor_out_of_range"
FAULTY_PRESSURE = 9.0
SITE_ID = "latency"


# ----------------------------------------------------------------------------- the publisher


def pump_template() -> dict[str, float]:
    """A running pump's sample from the simulator's model (the noise is added per message)."""
    from simulators.models.offline import simulate_offline

    device = DeviceConfig(id="template-pump", kind="water_pump", building="B1", floor=-1)
    start = time.time() - 3600
    for _, sample in simulate_offline([device], start, start + 3600, seed=11):
        if sample.values and sample.values.get("current_a", 0.0) >= 1.0:
            return {k: float(v) for k, v in sample.values.items()}
    raise BenchError("the pump model never ran in an hour")


def publish_main(args: argparse.Namespace) -> int:
    """The load publisher (a separate process): pumps at 1 Hz, faults after the warm-up."""
    site = load_site(args.site)
    pumps = [d.id for d in site.all_devices()]
    template = pump_template()
    rng = random.Random(5)
    fault_at: dict[str, float] = {}
    client = mqtt_client(f"bench-latency-pub-{time.monotonic_ns()}")
    connect(client, args.port)
    start = time.time()
    faulty = pumps[: args.faults]
    for i, device_id in enumerate(faulty):
        fault_at[device_id] = start + args.warmup + args.fault_window * i / max(1, len(faulty))
    topics = {d: telemetry_topic(site.site_id, "water_pump", d) for d in pumps}
    heap = [(start + rng.random(), d) for d in pumps]
    heapq.heapify(heap)
    sent_first: dict[str, float] = {}
    published = 0
    end = start + args.warmup + args.fault_window + args.tail
    while time.time() < end:
        now = time.time()
        while heap and heap[0][0] <= now:
            due, device_id = heapq.heapreplace(heap, (heap[0][0] + 1.0, heap[0][1]))
            values = {k: round(v * (1.0 + 0.01 * rng.gauss(0.0, 1.0)), 4)
                      for k, v in template.items()}
            fault = fault_at.get(device_id)
            if fault is not None and due >= fault:
                values["pressure_bar"] = round(FAULTY_PRESSURE + 0.05 * rng.random(), 4)
            body = json.dumps({"ts": round(due, 3), **values}, separators=(",", ":"))
            if fault is not None and due >= fault and device_id not in sent_first:
                sent_first[device_id] = time.time()
            client.publish(topics[device_id], body, qos=1)
            published += 1
        time.sleep(max(0.0, min(0.005, heap[0][0] - time.time())) if heap else 0.01)
    elapsed = time.time() - start
    client.disconnect()
    client.loop_stop()
    Path(args.out).write_text(json.dumps({
        "published": published, "seconds": elapsed, "rate": published / elapsed,
        "first_faulty_sent": sent_first,
    }))
    return 0


# ----------------------------------------------------------------------------- observing orders


class OrderWatcher:
    """Reads the cloud's live stream and notes when each device's order first shows."""

    def __init__(self, api: httpx.Client, event_type: str) -> None:
        self._api = api
        self._type = event_type
        self.seen: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="order-watcher")
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        after = 0
        while not self._stop.is_set():
            try:
                with self._api.stream("GET", "/api/v1/stream", params={
                    "after": after, "max_seconds": 30}, timeout=60) as resp:
                    for line in resp.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith("id: "):
                            after = int(line[4:])
                        elif line.startswith("data: "):
                            self._note(json.loads(line[6:]))
            except httpx.HTTPError:  # the stream is re-opened from the last id
                self.errors += 1
                time.sleep(0.2)

    def _note(self, message: dict[str, Any]) -> None:
        order = message.get("work_order") or {}
        if order.get("event_type") != self._type:
            return
        device = str(order.get("device_id"))
        if device not in self.seen:
            self.seen[device] = (time.time(), float(message["ts"]))


def direct_baseline(base: str, token: str, devices: list[str], watcher: OrderWatcher,
                    timeout: float) -> dict[str, Any]:
    """One single-event batch per device straight to the cloud; post -> order visible."""
    sent: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=30,
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json"}) as gw:
        for device_id in devices:
            ts = time.time()
            event = Event(
                event_id=make_event_id(SITE_ID, device_id, EVENT_TYPE, ts, "raised"),
                site_id=SITE_ID, gateway_id="gw-direct", device_id=device_id,
                kind="water_pump", type=EVENT_TYPE, severity="warning", state="raised", ts=ts,
                evidence={"fields": {"pressure_bar": {"value": FAULTY_PRESSURE}}},
            )
            sent[device_id] = time.time()
            reply = gw.post("/api/v1/events", content=EventBatch(events=[event])
                            .model_dump_json())
            reply.raise_for_status()
            time.sleep(0.05)
    wait_for(lambda: all(d in watcher.seen for d in devices), timeout)
    return latencies(sent, watcher)


def latencies(sent: dict[str, float], watcher: OrderWatcher) -> dict[str, Any]:
    visible = [watcher.seen[d][0] - t for d, t in sent.items() if d in watcher.seen]
    recorded = [watcher.seen[d][1] - t for d, t in sent.items() if d in watcher.seen]
    return {
        "faults": len(sent), "orders_seen": len(visible),
        "visible": distribution_ms(visible), "recorded": distribution_ms(recorded),
    }


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


# ----------------------------------------------------------------------------- the run


@contextlib.contextmanager
def database(tmp: Path, sqlite: bool) -> Iterator[str]:
    if sqlite:
        yield f"sqlite:///{tmp / 'cloud.db'}"
    else:
        with postgres_database(tmp / "pg") as url:
            yield url


def run(args: argparse.Namespace) -> dict[str, Any]:
    workers = 1 if args.sqlite else args.workers
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gh-latency-")))
        broker = stack.enter_context(mosquitto(tmp / "mqtt"))
        vm = stack.enter_context(victoria_metrics(tmp / "vm"))
        url = stack.enter_context(database(tmp, args.sqlite))
        direct = [DeviceConfig(id=f"direct-{i}", kind="water_pump", floor=-1)
                  for i in range(args.direct)]
        site = SiteConfig(
            site_id=SITE_ID, gateway_id="gw-latency", data_dir=str(tmp / "edge-data"),
            mqtt=MqttConfig(url=broker.url, client_id="bench-latency-edge"),
            cloud=CloudConfig(url="http://127.0.0.1:1", retry_initial=0.05, retry_max=1.0),
            tsdb=TsdbConfig(url=vm.url),
            devices=[DeviceConfig(id=f"p{i:05d}", kind="water_pump", building=f"B{i % 20}",
                                  floor=-1) for i in range(args.pumps)],
        )
        token = provision(url, {SITE_ID: site.model_copy(update={"devices": site.devices
                                                                 + direct})})[SITE_ID]
        base, _ = stack.enter_context(cloud_process(
            url, tmp / "cloud", workers=workers,
            env={} if args.stream_poll is None
            else {"GATEHOUSE_STREAM_POLL_INTERVAL": str(args.stream_poll)},
        ))
        site.cloud.url = base
        site.cloud.token = token
        api = admin_login(url, base, [SITE_ID])
        watcher = OrderWatcher(api, EVENT_TYPE)
        watcher.start()
        edge: EdgeProcess = stack.enter_context(edge_process(site, tmp / "edge"))
        wait_connected(edge)
        out = tmp / "publisher.json"
        publisher = spawn("publisher", [
            sys.executable, str(REPO / "bench" / "bench_latency.py"), "publish",
            "--port", str(broker.port), "--site", str(write_site(site, tmp / "site.yaml")),
            "--faults", str(args.faults), "--warmup", str(args.warmup),
            "--fault-window", str(args.fault_window), "--tail", str(args.tail),
            "--out", str(out),
        ], tmp)
        time.sleep(args.warmup / 2)
        m0 = edge.metrics()
        t0 = time.monotonic()
        baseline = direct_baseline(base, token, [d.id for d in direct], watcher, timeout=30)
        publisher.proc.wait(args.warmup + args.fault_window + args.tail + 120)
        m1 = edge.metrics()
        rate_window = time.monotonic() - t0
        if publisher.proc.returncode != 0:
            raise BenchError(f"publisher failed: {publisher.tail()}")
        pub = json.loads(out.read_text())
        sent: dict[str, float] = pub["first_faulty_sent"]
        wait_for(lambda: all(d in watcher.seen for d in sent), 30)
        watcher.stop()
        agent_rate = (m1.get("messages_received", 0) - m0.get("messages_received", 0)) / rate_window
        edge_lat = latencies(sent, watcher)
        return {
            "pumps": args.pumps, "cloud_workers": workers,
            "database": "sqlite" if args.sqlite else "postgresql",
            "stream_poll_interval_s": args.stream_poll if args.stream_poll is not None
            else Settings.model_fields["stream_poll_interval"].default,
            "stream_woken_by_commit": True,
            "background_load": {
                "published_messages_per_s": round(pub["rate"], 1),
                "agent_received_messages_per_s": round(agent_rate, 1),
                "agent_rejected": int(m1.get("rejects", 0)),
                "agent_queue_overflow": int(m1.get("queue_overflow", 0)),
            },
            "edge_path": edge_lat,
            "direct_to_cloud_baseline": baseline,
            "ratio_visible_p50_edge_to_direct": round(
                edge_lat["visible"]["p50_ms"] / baseline["visible"]["p50_ms"], 2)
            if baseline["visible"]["p50_ms"] else None,
            "events_raised": int(m1.get("events", 0)),
            "events_forwarded": int(m1.get("forwarded", 0)),
            "all_orders_seen": edge_lat["orders_seen"] == len(sent) == args.faults,
            "stream_reconnects": watcher.errors,
        }


def summary(r: dict[str, Any]) -> str:
    e, b, load = r["edge_path"], r["direct_to_cloud_baseline"], r["background_load"]
    return (
        f"latency under {load['published_messages_per_s']:.0f} msg/s of background "
        f"telemetry (agent took {load['agent_received_messages_per_s']:.0f} msg/s), "
        f"{e['faults']} faults, cloud: {r['database']} x{r['cloud_workers']} workers\n"
        f"  first faulty reading published -> work order visible through the API: "
        f"p50 {e['visible']['p50_ms']:.0f} ms, p90 {e['visible']['p90_ms']:.0f} ms, "
        f"p99 {e['visible']['p99_ms']:.0f} ms, max {e['visible']['max_ms']:.0f} ms "
        f"({e['orders_seen']}/{e['faults']} seen)\n"
        f"  ... -> order recorded by the cloud: p50 {e['recorded']['p50_ms']:.0f} ms, "
        f"p99 {e['recorded']['p99_ms']:.0f} ms\n"
        f"  baseline, event posted straight to the cloud -> visible: p50 "
        f"{b['visible']['p50_ms']:.0f} ms, p99 {b['visible']['p99_ms']:.0f} ms "
        f"(edge/direct p50 ratio {r['ratio_visible_p50_edge_to_direct']})"
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["publish"]:
        p = argparse.ArgumentParser(prog="bench_latency.py publish")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--site", type=Path, required=True)
        p.add_argument("--faults", type=int, required=True)
        p.add_argument("--warmup", type=float, required=True)
        p.add_argument("--fault-window", type=float, required=True)
        p.add_argument("--tail", type=float, required=True)
        p.add_argument("--out", type=Path, required=True)
        return publish_main(p.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pumps", type=int, default=2000)
    parser.add_argument("--faults", type=int, default=1000)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--fault-window", type=float, default=50.0)
    parser.add_argument("--tail", type=float, default=5.0)
    parser.add_argument("--direct", type=int, default=50, help="baseline events")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sqlite", action="store_true", help="cloud on SQLite, one worker")
    parser.add_argument("--stream-poll", type=float, default=None,
                        help="the stream's fallback poll, seconds (default: the product's)")
    parser.add_argument("--quick", action="store_true", help="small counts (the tests)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.pumps, args.faults, args.direct = 100, 20, 5
        args.warmup, args.fault_window, args.tail = 6.0, 4.0, 2.0
    if args.faults > args.pumps:
        parser.error("--faults must not exceed --pumps (one fault per pump)")
    result = run(args)
    report("latency", result, summary(result), args.json_out)
    return 0 if result["all_orders_seen"] else 1


if __name__ == "__main__":
    sys.exit(main())
