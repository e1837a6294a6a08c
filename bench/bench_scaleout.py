"""Scale-out benchmark: 200 sites into one multi-worker cloud, and agents sharing a site's topics.

Two parts, every server a separate process (PostgreSQL, ``gatehouse cloud serve``,
Mosquitto, ``gatehouse edge``):

``sites``
    ``--sites`` simulated gateways (each site provisioned with its own devices and gateway
    token) speak the edge's protocol (``EventBatch`` to ``POST /api/v1/events`` with the
    site's bearer token, asyncio + httpx in this process). Each sends ``--batches`` batches
    of ``--batch`` raised events as fast as the cloud answers (the saturated rate), then
    ``--paced-batches`` batches of ``--paced-batch`` events at an even pace that offers
    ``--paced-load`` of that rate (the request latency of a cloud that keeps up). Each
    gateway re-sends the second batch of every ten (a gateway that lost the reply), which
    must come back as duplicates. A failed request (an error status, a dropped connection)
    is retried with backoff like the edge forwarder does, and counted. Every event must be
    accepted exactly once. The saturated phase keeps ``--connections`` requests in
    flight (200 at once exhaust a worker's database pool: requests then wait 30 s and fail,
    see docs/benchmarks/performance.md); in the paced phase every gateway has its own
    connection. The cloud runs
    ``--workers`` (default 2) worker processes on one fresh PostgreSQL database; the
    baseline, in the same run on another fresh database, is the same load on one worker.
    Reported: events/s, request latency (of answered requests), errors, and from SQL:
    events stored, orders, and
    (device, event type) pairs with more than one order (must be 0).

``shared``
    ``--agents`` real ``gatehouse edge`` processes of one site subscribe through the shared
    group ``$share/edge/gh/{site}/+/+/+`` (``mqtt.shared_group`` in the site file) and feed
    the same cloud. The publisher sends ``--messages`` telemetry messages of a 20-building
    estate at QoS 1 plus three faulty readings of each of ``--fault-pumps`` pumps. Every
    message must be received by exactly one agent (the received counts add up to what was
    published), and the faults must open exactly one order per pump.

    .venv/bin/python bench/bench_scaleout.py [--sites 200] [--agents 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import create_engine, text

from bench.common import (
    BenchError,
    EdgeProcess,
    cloud_process,
    distribution_ms,
    edge_process,
    estate_messages,
    provision,
    publish_all,
    report,
    wait_connected,
)
from device_profiles.loader import load_profiles
from device_profiles.messages import Event, make_event_id, telemetry_topic
from device_profiles.site import (
    CloudConfig,
    DeviceConfig,
    EstateLayout,
    MqttConfig,
    SiteConfig,
)
from tests.servers import mosquitto, postgres_database

KINDS = ("elevator", "water_pump", "smart_meter", "access_gate")
RESEND_EVERY = 10
MAX_ATTEMPTS = 8


# ----------------------------------------------------------------------------- part 1: sites


def site_configs(n_sites: int, devices: int) -> dict[str, SiteConfig]:
    return {
        f"s{i:03d}": SiteConfig(
            site_id=f"s{i:03d}",
            devices=[DeviceConfig(id=f"d{j:02d}", kind=KINDS[j % len(KINDS)])
                     for j in range(devices)],
        )
        for i in range(n_sites)
    }


def order_types() -> dict[str, list[str]]:
    """Per kind, the event types whose profile opens a work order."""
    profiles = load_profiles()
    return {k: sorted(t for t, spec in profiles[k].events.items() if spec.work_order is not None)
            for k in KINDS}


def gateway_batches(site: SiteConfig, batches: int, batch: int, types: dict[str, list[str]],
                    rng: random.Random, t0: float) -> list[bytes]:
    """The batches one simulated gateway sends (every event unique, ids stable)."""
    devices = site.all_devices()
    out: list[bytes] = []
    n = 0
    for _ in range(batches):
        events = []
        for _ in range(batch):
            device = devices[rng.randrange(len(devices))]
            etype = types[device.kind][rng.randrange(min(2, len(types[device.kind])))]
            ts = t0 + n
            n += 1
            events.append(Event(
                event_id=make_event_id(site.site_id, device.id, etype, ts, "raised"),
                site_id=site.site_id, gateway_id=site.gateway_id, device_id=device.id,
                kind=device.kind, type=etype, severity="warning", state="raised", ts=ts,
                evidence={"score": round(rng.random(), 3), "threshold": 0.5},
            ).model_dump(mode="json"))
        out.append(json.dumps({"events": events}, separators=(",", ":")).encode())
    return out


async def post_until_answered(client: httpx.AsyncClient, body: bytes,
                              headers: dict[str, str], stats: dict[str, Any]) -> Any:
    """POST one batch, retried like the edge forwarder until the cloud answers 200.

    Every failed attempt is counted (by kind); the reply of the successful one is returned.
    """
    delay = 0.5
    for _ in range(MAX_ATTEMPTS):
        started = time.perf_counter()
        try:
            reply = await client.post("/api/v1/events", content=body, headers=headers)
        except httpx.HTTPError as exc:
            key = type(exc).__name__
        else:
            if reply.status_code == 200:
                stats["latency"].append(time.perf_counter() - started)
                return reply.json()
            key = f"http_{reply.status_code}"
        stats["errors"] += 1
        stats["error_kinds"][key] = stats["error_kinds"].get(key, 0) + 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, 8.0)
    stats["gave_up"] += 1
    return None


async def gateway(client: httpx.AsyncClient, token: str, bodies: list[bytes],
                  stats: dict[str, Any], interval: float = 0.0, offset: float = 0.0) -> None:
    """Send ``bodies`` in turn: back to back, or one every ``interval`` seconds."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    loop = asyncio.get_running_loop()
    start = loop.time() + offset
    for i, body in enumerate(bodies):
        if interval:
            await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
        sends = 2 if i % RESEND_EVERY == 1 else 1
        for attempt in range(sends):
            result = await post_until_answered(client, body, headers, stats)
            if result is None:
                continue
            stats["accepted"] += len(result["accepted"])
            stats["duplicates"] += len(result["duplicates"])
            stats["rejected"] += len(result["rejected"])
            if attempt == 1:
                stats["resent"] += len(json.loads(body)["events"])


async def drive(base: str, tokens: dict[str, str], work: dict[str, list[bytes]],
                interval: float = 0.0, connections: int | None = None) -> dict[str, Any]:
    """The gateways back to back or paced (``interval``) over at most ``connections``
    connections (default: one per gateway)."""
    stats: dict[str, Any] = {"accepted": 0, "duplicates": 0, "rejected": 0, "resent": 0,
                             "errors": 0, "gave_up": 0, "error_kinds": {}, "latency": []}
    n = len(work)
    conns = min(n, connections or n)
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(
            gateway(client, tokens[s], work[s], stats, interval, interval * i / n)
            for i, s in enumerate(work)
        ))
        stats["seconds"] = time.perf_counter() - started
    return stats


def check_database(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        events = conn.execute(text("SELECT COUNT(*) FROM events")).scalar_one()
        orders, pairs, counted = conn.execute(text(
            "SELECT COUNT(*), COUNT(DISTINCT site_id || '/' || device_id || '/' || event_type), "
            "COALESCE(SUM(event_count), 0) FROM work_orders WHERE source = 'event'")).one()
        duplicated = conn.execute(text(
            "SELECT COUNT(*) FROM (SELECT site_id, device_id, event_type FROM work_orders "
            "WHERE source = 'event' GROUP BY site_id, device_id, event_type "
            "HAVING COUNT(*) > 1) AS d")).scalar_one()
    engine.dispose()
    return {"events_stored": int(events), "orders": int(orders),
            "device_type_pairs": int(pairs), "events_counted_on_orders": int(counted),
            "duplicated_orders": int(duplicated)}


def sites_scenario(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sites = site_configs(args.sites, args.devices)
    types = order_types()
    rng = random.Random(17)
    # Recent episodes: year-old ones would breach every SLA at once and the engine would
    # spend the run escalating them.
    t0 = time.time() - 600
    work = {s: gateway_batches(cfg, args.batches, args.batch, types, rng, t0=t0)
            for s, cfg in sites.items()}
    paced_work = {s: gateway_batches(cfg, args.paced_batches, args.paced_batch, types, rng,
                                     t0=t0 + 300) for s, cfg in sites.items()}
    unique = args.sites * (args.batches * args.batch + args.paced_batches * args.paced_batch)
    with postgres_database(tmp / f"pg-{workers}") as url:
        tokens = provision(url, sites)
        with cloud_process(url, tmp / f"cloud-{workers}", workers=workers) as (base, _):
            stats = asyncio.run(drive(base, tokens, work, connections=args.connections))
            rate = stats["accepted"] / stats["seconds"]
            offered = rate * args.paced_load
            interval = args.sites * args.paced_batch / offered
            paced = asyncio.run(drive(base, tokens, paced_work, interval))
        db = check_database(url)
    saturated_latency = distribution_ms(stats.pop("latency"))
    paced_latency = distribution_ms(paced.pop("latency"))
    errors = stats["errors"] + paced["errors"]
    accepted = stats["accepted"] + paced["accepted"]
    return {
        "workers": workers, "sites": args.sites, "events_unique": unique,
        "events_per_s": round(rate, 1), "seconds": round(stats["seconds"], 2),
        "request_latency_saturated": saturated_latency,
        "paced": {
            "offered_events_per_s": round(offered, 1), "batch": args.paced_batch,
            "interval_per_gateway_s": round(interval, 2),
            "achieved_events_per_s": round(paced["accepted"] / paced["seconds"], 1),
            "request_latency": paced_latency, "errors": paced["errors"],
        },
        "accepted": accepted, "duplicates": stats["duplicates"] + paced["duplicates"],
        "resent": stats["resent"] + paced["resent"], "errors": errors,
        "error_kinds": {**stats["error_kinds"], **paced["error_kinds"]}, **db,
        "gave_up": stats["gave_up"] + paced["gave_up"],
        "ok": bool(accepted == unique and stats["gave_up"] + paced["gave_up"] == 0
                   and stats["duplicates"] + paced["duplicates"]
                   >= stats["resent"] + paced["resent"]
                   and db["events_stored"] == unique and db["duplicated_orders"] == 0),
    }


# ----------------------------------------------------------------------------- part 2: shared


def shared_scenario(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    site_id = "shared"
    base_site = SiteConfig(
        site_id=site_id, estate=EstateLayout(buildings=20, floors=18),
        mqtt=MqttConfig(shared_group="edge"),
    )
    pumps = [d.id for d in base_site.all_devices() if d.kind == "water_pump"]
    fault_pumps = pumps[: args.fault_pumps]
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(mosquitto(tmp / "mqtt"))
        url = stack.enter_context(postgres_database(tmp / "pg-shared"))
        token = provision(url, {site_id: base_site})[site_id]
        base, _ = stack.enter_context(cloud_process(url, tmp / "cloud-shared", workers=2))
        agents: list[EdgeProcess] = []
        for i in range(args.agents):
            site = base_site.model_copy(update={
                "gateway_id": f"gw-{i}", "data_dir": str(tmp / f"edge-{i}"),
                "mqtt": MqttConfig(url=broker.url, shared_group="edge",
                                   client_id=f"bench-shared-{i}"),
                "cloud": CloudConfig(url=base, token=token, retry_initial=0.1, retry_max=1.0),
            })
            agents.append(stack.enter_context(edge_process(site, tmp / f"agent-{i}", f"edge{i}")))
        for agent in agents:
            wait_connected(agent)
        msgs = estate_messages(base_site, args.messages)
        last = max(json.loads(p)["ts"] for _, p in msgs)
        template = next(json.loads(p) for t, p in msgs if "/water_pump/" in t)
        for k in range(3):
            for pump in fault_pumps:
                body = {**template, "ts": round(last + 1 + k, 3), "pressure_bar": 9.0 + k / 10}
                msgs.append((telemetry_topic(site_id, "water_pump", pump),
                             json.dumps(body).encode()))
        published = len(msgs)
        publish_s = publish_all(broker.port, msgs, 1)
        deadline = time.monotonic() + max(60.0, published / 500)
        while True:
            per_agent = [a.metrics() for a in agents]
            acked = sum(m.get("mqtt_acks", 0) for m in per_agent)
            pending = sum(m.get("outbox_depth", 0) for m in per_agent)
            if (acked >= published and pending == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        per_agent = [a.metrics() for a in agents]
        db = check_database(url)
        engine = create_engine(url)
        with engine.connect() as conn:
            fault_orders = conn.execute(text(
                "SELECT COUNT(*) FROM work_orders WHERE event_type = 'pump.sensor_out_of_range'"
            )).scalar_one()
        engine.dispose()
    received = [int(m.get("messages_received", 0)) for m in per_agent]
    return {
        "agents": args.agents, "published": published,
        "publish_messages_per_s": round(published / publish_s, 1),
        "received_per_agent": received, "received_total": sum(received),
        "rejected_total": int(sum(m.get("rejects", 0) for m in per_agent)),
        "events_raised_per_agent": [int(m.get("events", 0)) for m in per_agent],
        "forwarded_total": int(sum(m.get("forwarded", 0) for m in per_agent)),
        "fault_pumps": len(fault_pumps), "fault_orders": int(fault_orders), **db,
        "ok": bool(sum(received) == published and all(r > 0 for r in received)
                   and fault_orders == len(fault_pumps) and db["duplicated_orders"] == 0),
    }


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gh-scaleout-") as name:
        tmp = Path(name)
        if "sites" in args.parts:
            scaled = sites_scenario(args.workers, args, tmp)
            baseline = sites_scenario(1, args, tmp)
            result["sites"] = {
                "scaled": scaled, "baseline_one_worker": baseline,
                "ratio_events_per_s": round(scaled["events_per_s"] / baseline["events_per_s"], 2)
                if baseline["events_per_s"] else None,
            }
        if "shared" in args.parts:
            result["shared_subscription"] = shared_scenario(args, tmp)
    return result


def summary(r: dict[str, Any]) -> str:
    lines = []
    if "sites" in r:
        s, b = r["sites"]["scaled"], r["sites"]["baseline_one_worker"]
        for label, x in ((f"{s['workers']} workers", s), ("1 worker (baseline)", b)):
            lat = x["paced"]["request_latency"]
            lines.append(
                f"{x['sites']} sites -> cloud, {label}: {x['events_per_s']:.0f} events/s "
                f"saturated; at {x['paced']['offered_events_per_s']:.0f} events/s offered, "
                f"request p50 {lat['p50_ms']:.0f} ms p99 {lat['p99_ms']:.0f} ms; "
                f"{x['errors']} errors, {x['duplicates']}/{x['resent']} resends answered as "
                f"duplicates, {x['orders']} orders, duplicated orders: {x['duplicated_orders']}")
        lines.append(f"  scale-out ratio {r['sites']['ratio_events_per_s']}x")
    if "shared_subscription" in r:
        x = r["shared_subscription"]
        lines.append(
            f"{x['agents']} agents on one shared subscription: received {x['received_per_agent']}"
            f" = {x['received_total']} of {x['published']} published, {x['rejected_total']} "
            f"rejected; {x['fault_orders']} orders for {x['fault_pumps']} faulty pumps, "
            f"duplicated orders: {x['duplicated_orders']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--devices", type=int, default=12, help="devices per site")
    parser.add_argument("--batches", type=int, default=5, help="batches per gateway")
    parser.add_argument("--batch", type=int, default=50, help="events per batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=40,
                        help="connections in flight at once in the saturated phase")
    parser.add_argument("--paced-batches", type=int, default=3,
                        help="batches per gateway in the paced phase")
    parser.add_argument("--paced-batch", type=int, default=10,
                        help="events per batch in the paced phase")
    parser.add_argument("--paced-load", type=float, default=0.5,
                        help="paced phase offers this fraction of the saturated rate")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--fault-pumps", type=int, default=4)
    parser.add_argument("--parts", nargs="+", default=["sites", "shared"],
                        choices=["sites", "shared"])
    parser.add_argument("--quick", action="store_true", help="small counts (the tests)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.sites, args.batches, args.batch = 12, 2, 10
        args.paced_batches, args.paced_batch = 2, 5
        args.agents, args.messages, args.fault_pumps = 2, 1500, 2
    if args.workers < 2:
        parser.error("--workers must be at least 2 (the baseline is one worker)")
    result = run(args)
    report("scaleout", result, summary(result), args.json_out)
    ok = [v.get("ok", True) for k, v in result.items() if isinstance(v, dict) and "ok" in v]
    ok += [result["sites"]["scaled"]["ok"], result["sites"]["baseline_one_worker"]["ok"]] \
        if "sites" in result else []
    if not all(ok):
        raise BenchError("a scale-out check failed; see the JSON above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
