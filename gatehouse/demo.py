"""``gatehouse demo``: a simulated estate end to end in one process tree, nothing to install.

An embedded MQTT broker (amqtt), the cloud on SQLite, the edge agent and the estate
simulator run together; faults of every kind are injected early, and the work orders they
open are visible on the dashboard and the API. ``--duration`` makes it exit by itself with a
summary (faults injected, events raised, work orders opened) and a non-zero code if a fault
kind opened no order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("gatehouse.demo")

DEMO_FAULTS: tuple[tuple[str, str, float, float, dict[str, Any]], ...] = (
    # (event type, device, start, end, params): simulated seconds after the start
    ("pump.bearing_wear", "b1-pump-1", 30.0, 4 * 3600.0, {"ramp": 3600.0}),
    ("elevator.entrapment", "b1-elev-1", 120.0, 3600.0, {}),
    ("elevator.door_fault", "b1-elev-2", 200.0, 7200.0, {"ramp": 300.0}),
    ("meter.voltage_sag", "b1-meter-2", 300.0, 3600.0, {}),
    ("gate.forced_open", "gate-1", 400.0, 900.0, {}),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds and print a summary (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="cloud/dashboard port (default 8000; the next free one if taken)",
    )
    parser.add_argument(
        "--mqtt-port", type=int, default=0, help="embedded broker port (default: a free one)"
    )
    parser.add_argument(
        "--data-dir",
        default="./var/demo",
        help="where the demo keeps its databases (wiped at start)",
    )
    parser.add_argument(
        "--buildings", type=int, default=2, help="buildings in the simulated estate"
    )
    parser.add_argument("--floors", type=int, default=18, help="floors per building")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed")
    parser.add_argument(
        "--speed", type=float, default=40.0,
        help="simulated time runs this many times faster than the clock, so slow faults "
        "(bearing wear over hours) show within a minute; 1 = real time (default 40)",
    )
    parser.add_argument("--no-faults", action="store_true", help="simulate a healthy estate")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON only")
    parser.add_argument(
        "--no-browser", action="store_true",
        help="do not open the dashboard in a browser (it opens only where a desktop is running)",
    )


def _free_port(preferred: int = 0) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt in a thread of its own: an MQTT 3.1.1 broker needing no installation."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mqtt-broker", daemon=True
        )
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        from amqtt.broker import Broker

        logging.getLogger("amqtt").setLevel(logging.ERROR)
        logging.getLogger("transitions").setLevel(logging.ERROR)
        self._thread.start()

        async def _start() -> Any:
            broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    "sys_interval": 0,
                    "auth": {"allow-anonymous": True},
                    "topic-check": {"enabled": False},
                }
            )
            await broker.start()
            return broker

        self._broker = asyncio.run_coroutine_threadsafe(_start(), self._loop).result(timeout=20)

    def stop(self) -> None:
        if self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(timeout=10)
            except Exception as exc:
                log.warning("embedded broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


class CloudServer:
    """The cloud app under uvicorn in a thread."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.port = port
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self._server.run, name="cloud", daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the cloud did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@dataclass
class Summary:
    duration_s: float
    faults_injected: dict[str, int] = field(default_factory=dict)
    events_raised: int = 0
    events_forwarded: int = 0
    messages_ingested: int = 0
    messages_rejected: int = 0
    work_orders_opened: dict[str, int] = field(default_factory=dict)
    fault_kinds_without_order: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not self.fault_kinds_without_order


def run(args: argparse.Namespace) -> int:
    import httpx

    from cloud.app import create_app
    from cloud.bootstrap import create_user, issue_gateway_token, provision_site
    from cloud.settings import Settings
    from device_profiles.site import CloudConfig, EstateLayout, MqttConfig, SiteConfig
    from edge.runner import Agent
    from simulators.models import FaultSpec
    from simulators.publisher import EstatePublisher

    # one line per HTTP request (the edge's posts, the demo's own polling) would bury the
    # demo's progress lines; failures still show as warnings from the callers
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data = Path(args.data_dir).resolve()
    if data.exists():
        shutil.rmtree(data)
    (data / "edge").mkdir(parents=True)
    started = time.time()

    broker = EmbeddedBroker(_free_port(args.mqtt_port))
    broker.start()
    print(f"[demo] embedded MQTT broker on {broker.url}", flush=True)

    settings = Settings(
        database_url=f"sqlite:///{data / 'cloud.db'}",
        secret_key=secrets.token_urlsafe(32),
        dev_mode=True,
    )
    app = create_app(settings)
    port = _free_port(args.port)
    cloud = CloudServer(app, port)
    cloud.start()
    base = f"http://127.0.0.1:{port}"

    site = SiteConfig(
        site_id="demo-estate",
        gateway_id="gw-demo",
        name="Demo Estate",
        data_dir=str(data / "edge"),
        mqtt=MqttConfig(url=broker.url, protocol="v311", client_id="gatehouse-edge-demo"),
        cloud=CloudConfig(url=base, retry_initial=0.2, retry_max=5.0),
        estate=EstateLayout(
            buildings=args.buildings,
            floors=args.floors,
            # The demo's faults show at any hour: bearing wear only while the pump runs (at
            # night a pump runs a few minutes in every half hour), a door fault only when the
            # door cycles (a few calls an hour at night), so that pump never pauses and that
            # elevator is a busy one.
            device_params={
                "b1-pump-1": {"duty": "continuous"},
                "b1-elev-2": {"busyness": 4.0},
            },
        ),
    )
    provision_site(settings, site.site_id, site.name, site.all_devices())
    token = issue_gateway_token(settings, site.site_id)
    site.cloud.token = token
    password = secrets.token_urlsafe(9)
    create_user(settings, "admin", password, "admin", [site.site_id])

    agent = Agent(site)
    agent.start()

    faults = (
        []
        if args.no_faults
        else [
            FaultSpec(device_id=dev, type=kind, start=started + s, end=started + e, params=params)
            for kind, dev, s, e, params in DEMO_FAULTS
        ]
    )
    truth_path = data / "truth.jsonl"
    sim = EstatePublisher(
        site, broker.url, seed=args.seed, faults=faults, truth_path=truth_path,
        speed=args.speed, start_ts=started, qos=1,
    )
    sim.start()

    print(f"[demo] dashboard   {base}/   (user admin, password {password})", flush=True)
    print(f"[demo] API docs    {base}/docs", flush=True)
    if not args.no_browser and _has_desktop():
        webbrowser.open(f"{base}/")
    print(f"[demo] devices     {len(site.all_devices())} in {args.buildings} buildings", flush=True)
    if faults:
        print(
            f"[demo] faults      {', '.join(f.type + '@' + f.device_id for f in faults)}",
            flush=True,
        )

    client = httpx.Client(base_url=base, timeout=10)
    login = client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
    login.raise_for_status()
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

    summary = Summary(duration_s=0.0)
    try:
        next_report = time.monotonic() + 10
        while args.duration <= 0 or time.time() - started < args.duration:
            time.sleep(0.5)
            if time.monotonic() >= next_report:
                next_report += 10
                orders = _orders(client, site.site_id)
                stats = agent.stats()
                print(
                    f"[demo] t={time.time() - started:5.0f}s"
                    f"  messages={stats.get('messages_ingested', 0)}"
                    f"  events={stats.get('events_raised', 0)}  open orders={len(orders)}",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("\n[demo] stopping", flush=True)
    finally:
        # Give the forwarder a moment to flush what was raised last, then stop the agent
        # before the simulated devices say goodbye (their "offline" would open orders).
        flush_deadline = time.monotonic() + 5
        while time.monotonic() < flush_deadline and agent.stats().get("outbox_depth", 0):
            time.sleep(0.2)
        orders = _orders(client, site.site_id)
        stats = agent.stats()
        agent.stop()
        sim.stop()
        cloud.stop()
        broker.stop()

    summary.duration_s = round(time.time() - started, 1)
    for fault in faults:
        summary.faults_injected[fault.type] = summary.faults_injected.get(fault.type, 0) + 1
    summary.events_raised = int(stats.get("events_raised", 0))
    summary.events_forwarded = int(stats.get("events_forwarded", 0))
    summary.messages_ingested = int(stats.get("messages_ingested", 0))
    summary.messages_rejected = int(stats.get("messages_rejected", 0))
    for order in orders:
        key = str(order.get("event_type") or order.get("source"))
        summary.work_orders_opened[key] = summary.work_orders_opened.get(key, 0) + 1
    summary.fault_kinds_without_order = sorted(
        t for t in summary.faults_injected if t not in summary.work_orders_opened
    )
    out = summary.__dict__ | {"ok": summary.ok()}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print("[demo] summary")
        print(
            f"  ran {summary.duration_s} s; {summary.messages_ingested} messages ingested,"
            f" {summary.messages_rejected} rejected"
        )
        print(f"  faults injected:    {summary.faults_injected}")
        print(
            f"  events raised:      {summary.events_raised} (forwarded {summary.events_forwarded})"
        )
        print(f"  work orders opened: {summary.work_orders_opened}")
        if summary.fault_kinds_without_order:
            print(f"  NO work order for:  {summary.fault_kinds_without_order}")
        print(json.dumps(out))
    return 0 if summary.ok() or args.duration <= 0 else 1


def _has_desktop() -> bool:
    """A browser window can be shown: a graphical session, or macOS / Windows."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def _orders(client: Any, site_id: str) -> list[dict[str, Any]]:
    try:
        resp = client.get("/api/v1/work-orders", params={"site_id": site_id, "limit": 1000})
        resp.raise_for_status()
        body = resp.json()
    except Exception as exc:
        log.warning("could not list work orders: %s", exc)
        return []
    items = body.get("items", body) if isinstance(body, dict) else body
    return [o for o in items if isinstance(o, dict)]
