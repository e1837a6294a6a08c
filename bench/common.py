"""Shared helpers of the performance benchmarks (ingest, latency, memory, scale-out).

Every benchmark runs the real parts as separate OS processes: a private Mosquitto, a private
VictoriaMetrics, PostgreSQL (a fresh database), ``gatehouse cloud serve`` and ``gatehouse
edge``. This module starts and stops them, builds site files, generates realistic
telemetry from the simulator's device models, publishes it, scrapes the agent's
``/metrics``, reads a process's resident memory, and prints each result the same way: one
JSON object, then a human summary (``--json-out`` also writes the JSON to a file).

It is also a small command-line tool used as a subprocess by the benchmarks:
``python bench/common.py subscribe ...`` is the bare paho-mqtt subscriber that only counts
(the ingest baseline).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from device_profiles.loader import load_profiles  # noqa: E402
from device_profiles.messages import telemetry_topic  # noqa: E402
from device_profiles.site import SiteConfig, dump_site  # noqa: E402
from gatehouse.processes import terminate_process  # noqa: E402
from tests.servers import free_port  # noqa: E402

SECRET = "bench-secret-0123456789abcdef-perf"
ADMIN_PASSWORD = "bench-admin-pass-123"
Message = tuple[str, bytes]


class BenchError(RuntimeError):
    """A benchmark could not run or its result is not trustworthy (the message says why)."""


# ----------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load = os.getloadavg()
    return {
        "python": platform.python_version(), "cpu": platform.machine(),
        "cpus": os.cpu_count(), "loadavg_1m_at_start": round(load[0], 2),
    }


def report(name: str, result: dict[str, Any], summary: str, json_out: Path | None) -> None:
    """Print ``result`` (with the benchmark name, date and machine) as JSON, then ``summary``."""
    body = {
        "benchmark": name, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), **result,
    }
    text = json.dumps(body, indent=2)
    print(text)
    print()
    print(summary)
    if json_out is not None:
        json_out.write_text(text + "\n", encoding="utf-8")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; ``nan`` for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def distribution_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max (milliseconds) of durations given in seconds."""
    ms = [v * 1000.0 for v in values_s]
    return {
        "count": float(len(ms)),
        "p50_ms": round(percentile(ms, 0.50), 1), "p90_ms": round(percentile(ms, 0.90), 1),
        "p99_ms": round(percentile(ms, 0.99), 1), "max_ms": round(max(ms), 1) if ms else 0.0,
    }


# ----------------------------------------------------------------------------- processes


@dataclass
class Process:
    """A child process with its log file; :meth:`stop` ends it (SIGTERM, then SIGKILL)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        terminate_process(self.proc, timeout)
        return int(self.proc.returncode)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def spawn(name: str, args: Sequence[str], workdir: Path, env: dict[str, str] | None = None
          ) -> Process:
    """Start ``args`` in ``workdir`` with stdout and stderr going to ``workdir/{name}.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it until it exits
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.Popen(list(args), cwd=workdir, env=full_env, stdout=log, stderr=log)
    log.close()
    return Process(name, proc, log_path)


def gatehouse(*args: str) -> list[str]:
    """The command line of ``gatehouse ARGS`` with this interpreter."""
    return [sys.executable, "-m", "gatehouse", *args]


def wait_http(url: str, proc: Process, timeout: float = 90.0) -> None:
    """Wait until ``url`` answers 200 (or 503: up but degraded); fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.proc.returncode}: {proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code in (200, 503):
                return
        time.sleep(0.1)
    raise BenchError(f"{proc.name} did not answer {url} within {timeout:.0f}s: {proc.tail()}")


@contextlib.contextmanager
def cloud_process(
    database_url: str, workdir: Path, *, workers: int = 1, engine: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, Process]]:
    """``gatehouse cloud serve`` on a free port; yields its base URL and the process."""
    port = free_port()
    proc = spawn(
        f"cloud-{port}",
        gatehouse("cloud", "--database-url", database_url, "serve", "--port", str(port),
                  "--workers", str(workers), *([] if engine else ["--no-engine"])),
        workdir,
        env={"GATEHOUSE_SECRET_KEY": SECRET, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", proc)
        yield base, proc
    finally:
        proc.stop()


def provision(database_url: str, sites: dict[str, SiteConfig]) -> dict[str, str]:
    """Create every site with its devices and one gateway token each; return the tokens.

    One transaction for all sites (the per-call helpers of :mod:`cloud.bootstrap` migrate
    the database every time, which takes minutes for hundreds of sites).
    """
    from cloud.bootstrap import upsert_device, upsert_site
    from cloud.db import Database
    from cloud.models import GatewayToken
    from cloud.security import gateway_token_hash, new_gateway_token
    from cloud.settings import Settings

    settings = Settings(database_url=database_url, secret_key=SECRET)
    db = Database(settings)
    tokens: dict[str, str] = {}
    now = time.time()
    try:
        db.migrate()
        with db.session() as session, session.begin():
            for site_id, site in sites.items():
                upsert_site(session, site_id, site_id, now)
                for device in site.all_devices():
                    upsert_device(session, site_id, device, now)
                token = new_gateway_token()
                session.add(GatewayToken(
                    site_id=site_id, token_hash=gateway_token_hash(token), prefix=token[:12],
                    created_at=now, expires_at=None,
                ))
                tokens[site_id] = token
    finally:
        db.dispose()
    return tokens


def admin_login(database_url: str, base: str, sites: list[str]) -> httpx.Client:
    """An API client logged in as an admin of ``sites`` (created if needed)."""
    from cloud.bootstrap import create_user
    from cloud.settings import Settings

    settings = Settings(database_url=database_url, secret_key=SECRET)
    create_user(settings, "bench-admin", ADMIN_PASSWORD, "admin", sites)
    api = httpx.Client(base_url=base, timeout=30)
    reply = api.post("/api/v1/auth/login",
                     json={"username": "bench-admin", "password": ADMIN_PASSWORD})
    reply.raise_for_status()
    api.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
    return api


# ----------------------------------------------------------------------------- the edge


@dataclass
class EdgeProcess:
    """A running ``gatehouse edge`` with its health port."""

    process: Process
    port: int
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as {name: value}, summed over labels (names without the prefix)."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return parse_metrics(text)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(self.url + "/healthz", timeout=10).json()
        return body


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name without ``gatehouse_edge_`` and ``_total``: sum over labels}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0].removeprefix("gatehouse_edge_").removesuffix("_total")
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def write_site(site: SiteConfig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dump_site(site, path)
    return path


@contextlib.contextmanager
def edge_process(site: SiteConfig, workdir: Path, name: str = "edge",
                 extra_args: Sequence[str] = ()) -> Iterator[EdgeProcess]:
    """``gatehouse edge`` for ``site`` (its file written to ``workdir``); waits for /healthz."""
    config = write_site(site, workdir / f"{name}.yaml")
    port = free_port()
    proc = spawn(
        name,
        gatehouse("--log-level", "WARNING", "edge", "--config", str(config),
                  "--http-port", str(port), "--reserve-mb", "0", "--low-water-mb", "0",
                  *extra_args),
        workdir,
    )
    edge = EdgeProcess(proc, port, config)
    try:
        wait_http(edge.url + "/healthz", proc)
        yield edge
    finally:
        proc.stop()


def wait_connected(edge: EdgeProcess, timeout: float = 30.0) -> None:
    """Until the agent's MQTT input is connected (and has sent its subscription)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if edge.health().get("mqtt", {}).get("connected"):
            time.sleep(0.3)
            return
        time.sleep(0.1)
    raise BenchError(f"edge did not connect to the broker: {edge.process.tail()}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (``VmRSS`` from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


# ----------------------------------------------------------------------------- telemetry


def estate_messages(site: SiteConfig, count: int, *, start: float | None = None,
                    seed: int = 3) -> list[Message]:
    """``count`` telemetry and device-event messages of ``site``, the simulator's own data.

    Samples are taken from :func:`simulators.models.offline.simulate_offline` from ``start``
    (default: now) on, every kind of the site in its natural proportion, in time order.
    A benchmark that drains a backlog starts the data at about the time the drain starts:
    data older than a profile's ``offline_after`` would make the offline detector raise and
    clear every device once a second, which is not the steady state being measured.
    """
    from simulators.models.offline import simulate_offline

    start = time.time() if start is None else start
    devices = site.all_devices()
    profiles = load_profiles()
    rate = sum(1.0 / float(profiles[d.kind].sampling_period) for d in devices)
    span = count / rate * 1.1 + 10.0
    out: list[Message] = []
    floors = site.estate.floors if site.estate is not None else None
    for device, sample in simulate_offline(devices, start, start + span, seed=seed,
                                           floors=floors):
        if sample.values:
            body = json.dumps({"ts": round(sample.ts, 3), **sample.values},
                              separators=(",", ":")).encode()
            out.append((telemetry_topic(site.site_id, device.kind, device.id), body))
        for event in sample.native_events:
            out.append((telemetry_topic(site.site_id, device.kind, device.id, "event"),
                        json.dumps(event, separators=(",", ":")).encode()))
        if len(out) >= count:
            break
    if len(out) < count:
        raise BenchError(f"the simulator produced {len(out)} messages, wanted {count}")
    return out[:count]


def mqtt_client(client_id: str, *, clean: bool = True, receive_maximum: int = 1000) -> Any:
    """A paho MQTT 5 client (callback API 2)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(receive_maximum)
    return client


def connect(client: Any, port: int, *, clean: bool = True, session_expiry: int = 0,
            receive_maximum: int = 1000, timeout: float = 10.0) -> None:
    """Connect ``client`` to the local broker and start its network thread."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    props.ReceiveMaximum = receive_maximum
    done = threading.Event()
    client.on_connect = lambda *a: done.set()
    client.connect("127.0.0.1", port, clean_start=clean, properties=props)
    client.loop_start()
    if not done.wait(timeout):
        raise BenchError(f"no CONNACK from the broker on port {port}")


def publish_all(port: int, messages: Sequence[Message], qos: int,
                window: int = 500) -> float:
    """Publish every message at ``qos`` as fast as the broker takes them; return seconds.

    At most ``window`` QoS 1 messages are unacknowledged at a time (paho rescans its whole
    outgoing queue on every PUBACK, so an unbounded queue costs more than it saves).
    """
    client = mqtt_client(f"bench-pub-{os.getpid()}-{time.monotonic_ns()}")
    connect(client, port)
    started = time.perf_counter()
    infos: list[Any] = []
    for i, (topic, payload) in enumerate(messages):
        info = client.publish(topic, payload, qos=qos)
        if info.rc:
            raise BenchError(f"publish failed with rc={info.rc}")
        infos.append(info)
        if qos and i >= window:
            infos[i - window].wait_for_publish(timeout=60)
    for info in infos[-window:]:
        info.wait_for_publish(timeout=60)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


# ----------------------------------------------------------------------------- bare subscriber


def _subscribe_main(args: argparse.Namespace) -> int:
    """The baseline consumer: subscribe with a persistent session and only count.

    ``--prime`` subscribes and leaves (so the broker queues what is published meanwhile);
    otherwise it reconnects to the session (whose subscription the broker kept: subscribing
    again would queue the SUBACK behind the backlog) and counts until ``--count`` messages arrived,
    then prints ``{"received", "seconds", "cpu_seconds"}`` (from the first message to the
    last: wall seconds, and the process's CPU seconds).
    """
    from paho.mqtt.subscribeoptions import SubscribeOptions

    client = mqtt_client(args.client_id, receive_maximum=args.receive_maximum)
    subscribed = threading.Event()
    finished = threading.Event()
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}

    def on_subscribe(*a: Any) -> None:
        subscribed.set()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        now = time.perf_counter()
        if state["n"] == 0:
            state["first"] = now
            state["cpu_first"] = time.process_time()
        state["n"] += 1
        state["last"] = now
        if state["n"] >= args.count:
            state["cpu_last"] = time.process_time()
            finished.set()

    client.on_subscribe = on_subscribe
    client.on_message = on_message
    connect(client, args.port, clean=False, session_expiry=3600,
            receive_maximum=args.receive_maximum)
    if args.prime:
        client.subscribe(args.topic, options=SubscribeOptions(qos=args.qos))
        if not subscribed.wait(10):
            raise BenchError("no SUBACK")
        client.disconnect()
        client.loop_stop()
        return 0
    finished.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    seconds = state["last"] - state["first"]
    print(json.dumps({"received": int(state["n"]), "seconds": seconds,
                      "cpu_seconds": state["cpu_last"] - state["cpu_first"]}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="benchmark helper processes")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("subscribe", help="the bare counting subscriber (ingest baseline)")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--client-id", required=True)
    s.add_argument("--qos", type=int, default=1)
    s.add_argument("--count", type=int, default=0)
    s.add_argument("--receive-maximum", type=int, default=1000)
    s.add_argument("--timeout", type=float, default=300.0)
    s.add_argument("--prime", action="store_true")
    args = parser.parse_args(argv)
    return _subscribe_main(args)


if __name__ == "__main__":
    sys.exit(main())
