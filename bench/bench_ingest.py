"""Ingest benchmark: the edge agent's whole pipeline against a bare paho-mqtt subscriber.

One run, one Mosquitto, one publisher, the same messages. For each QoS (1, then 0):

1. a bare paho-mqtt subscriber (``bench/common.py subscribe``, MQTT 5, persistent session,
   the agent's Receive Maximum of 1000, counts and nothing else) and ``gatehouse edge``
   (validation, every detector of every profile, SQLite outbox with ``synchronous=FULL``,
   the InfluxDB line-protocol writer into a real VictoriaMetrics, the forwarder to a real
   ``gatehouse cloud serve``) each subscribe once with a persistent session and leave;
2. the publisher puts ``--messages`` messages of a 20-building estate (182 devices: the
   simulator's own telemetry of elevators, pumps, meters, cameras and access gates with
   their native events, time-stamped from about when the drains start) into the broker,
   which queues one copy for each session;
3. each consumer reconnects in turn and drains its copy as fast as it can: the rate is
   messages per second from its first message to its last (the agent: to the last
   acknowledgement, which it sends only once the burst is durable). The CPU time each
   consumer process used per message is reported too: on a shared machine it is steadier
   than the wall-clock rate.

Every message must be accounted for: the subscriber counts them all, the agent's
``messages_received`` and ``mqtt_acks`` equal the count with no rejection, and
VictoriaMetrics holds one sample per field of every telemetry message.

``--profile`` adds one more QoS 1 drain with ``py-spy`` attached to the agent (not part of
the measured figures; ``--gil``: only the thread holding the interpreter lock is sampled,
so the shares are shares of the CPU work the GIL serialises) and prints where it goes.

    .venv/bin/python bench/bench_ingest.py [--messages 100000] [--profile] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    BenchError,
    EdgeProcess,
    Message,
    cloud_process,
    cpu_seconds,
    edge_process,
    estate_messages,
    provision,
    publish_all,
    report,
    wait_connected,
)
from device_profiles.site import CloudConfig, EstateLayout, MqttConfig, SiteConfig, TsdbConfig
from edge.topics import site_subscription
from tests.servers import mosquitto
from tests.servers_tsdb import VictoriaMetrics, victoria_metrics

POLL = 0.05
"""Seconds between two scrapes of the agent's /metrics while it drains."""
BUILDINGS = 20
"""20 towers: 182 devices of five kinds, about 72 messages/s in real time."""
LEAD = 15.0
"""Seconds between generating the messages and the drains: the data starts then."""


def site_for(qos: int, broker_url: str, cloud_url: str, vm_url: str, data: Path) -> SiteConfig:
    return SiteConfig(
        site_id=f"ingest-q{qos}", gateway_id=f"gw-q{qos}", data_dir=str(data),
        mqtt=MqttConfig(url=broker_url, qos=qos, client_id=f"bench-edge-q{qos}"),
        cloud=CloudConfig(url=cloud_url),
        tsdb=TsdbConfig(url=vm_url),
        estate=EstateLayout(buildings=BUILDINGS, floors=18),
    )


def bare_subscriber(port: int, topic: str, qos: int, count: int, *, prime: bool) -> Any:
    cmd = [sys.executable, str(REPO / "bench" / "common.py"), "subscribe", "--port", str(port),
           "--topic", topic, "--client-id", f"bench-bare-{topic.split('/')[1]}",
           "--qos", str(qos), "--count", str(count)]
    if prime:
        cmd.append("--prime")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise BenchError(f"bare subscriber failed: {done.stderr[-1500:]}")
    return None if prime else json.loads(done.stdout.strip().splitlines()[-1])


def drain_agent(edge: EdgeProcess, count: int, timeout: float) -> dict[str, Any]:
    """Scrape /metrics until every message is acknowledged; the rate after the first one."""
    deadline = time.monotonic() + timeout
    first_t = 0.0
    first_n = 0.0
    first_cpu = 0.0
    pid = edge.process.pid
    while True:
        m = edge.metrics()
        now = time.perf_counter()
        received = m.get("messages_received", 0.0)
        if received > 0 and not first_t:
            first_t, first_n, first_cpu = now, m.get("mqtt_acks", 0.0), cpu_seconds(pid)
        if m.get("mqtt_acks", 0.0) >= count:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"agent acknowledged {m.get('mqtt_acks', 0):.0f} of {count} "
                             f"within {timeout:.0f}s: {edge.process.tail()}")
        time.sleep(POLL)
    cpu = cpu_seconds(pid) - first_cpu
    measured = count - first_n
    # the agent's own clock: first message received -> last acknowledgement sent (like the
    # bare subscriber's first -> last message); the scrapes only bound the CPU window
    first_at = m.get("first_message_timestamp_seconds", 0.0)
    last_at = m.get("last_ack_timestamp_seconds", 0.0)
    seconds = last_at - first_at if first_at and last_at > first_at else now - first_t
    return {
        "seconds": round(seconds, 3),
        "messages_per_s": round((count - 1) / seconds, 1) if seconds > 0 else 0.0,
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_message": round(cpu / measured * 1e6, 1) if measured else 0.0,
        "cpu_utilisation": round(cpu / seconds, 2) if seconds > 0 else 0.0,
        "received": int(m.get("messages_received", 0)),
        "acked": int(m.get("mqtt_acks", 0)),
        "readings": int(m.get("readings", 0)),
        "native_events": int(m.get("native_events", 0)),
        "rejected": int(m.get("rejects", 0)),
        "events_raised": int(m.get("events", 0)),
        "queue_overflow": int(m.get("queue_overflow", 0)),
        "telemetry_spooled": int(m.get("telemetry_spooled", 0)),
        "telemetry_dropped": int(m.get("telemetry_dropped", 0)),
    }


def expected_samples(messages: list[Message]) -> int:
    """One VictoriaMetrics sample per field of every telemetry message."""
    return sum(len(json.loads(p)) - 1 for t, p in messages if t.endswith("/telemetry"))


def stored_samples(vm: VictoriaMetrics, site_id: str, messages: list[Message], want: int,
                   timeout: float) -> int:
    """Samples of the site's telemetry series in VictoriaMetrics (waits for ``want``)."""
    stamps = [json.loads(p)["ts"] for _, p in messages]
    at = max(stamps) + 60
    window = int(at - min(stamps)) + 600
    expr = (f'sum(count_over_time({{site="{site_id}",__name__!~"edge_events.*"}}'
            f'[{window}s]))')
    deadline = time.monotonic() + timeout
    got = 0
    while True:
        vm.flush()
        result = vm.query(expr, at)
        got = int(float(result[0]["value"][1])) if result else 0
        if got >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


STAGES = {
    "mqtt_input_thread (socket reads, packet cutting, hand-over)": "MqttInput._run ",
    "mqtt_packet_cutting": "PacketReader.feed ",
    "runner_burst (everything after the queue)": "Agent._process ",
    "validation": "Validator.validate ",
    "detection": "Detection.observe ",
    "telemetry_outputs (TSDB writer, cloud summary)": "Agent._write_telemetry ",
    "tsdb_writer": "InfluxTelemetryWriter.write ",
    "cloud_summary_output": "CloudSummaryOutput.write ",
    "commit_and_ack": "Agent._flush ",
    "ticks (offline checks)": "Agent._tick ",
    "forwarder": "Forwarder.run ",
    "metrics_http": "HealthServer",
}
"""Pipeline stages of the profile, by the function whose inclusive time they are."""


def profile_summary(raw: Path, top: int = 15) -> dict[str, Any]:
    """py-spy's collapsed stacks -> share of samples per thread and per function."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    staged: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack:
            continue
        n = int(n_text)
        frames = stack.split(";")
        total += n
        threads[frames[0].split(" ", 2)[-1] if frames[0].startswith("thread") else frames[0]] += n
        funcs = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":")[0].rsplit(
            "/", 2)[-1] + ")" if " (" in f else f for f in frames[1:]]
        if funcs:
            self_time[funcs[-1]] += n
        for func in set(funcs):
            inclusive[func] += n
        for stage, prefix in STAGES.items():
            if any(func.startswith(prefix) for func in funcs):
                staged[stage] += n

    def share(counter: Counter[str], n: int = top) -> list[tuple[str, float]]:
        return [(k, round(v / total, 3)) for k, v in counter.most_common(n)]

    stages = {stage: round(staged[stage] / total, 3) for stage in STAGES} if total else {}
    return {"samples": total, "threads": share(threads), "stages": stages,
            "self": share(self_time), "inclusive": share(inclusive, 2 * top)}


def run_profile(edge_ctx: Any, messages: list[Message], port: int, pid_out: Path,
                count: int) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    publish_all(port, messages, 1)
    with edge_ctx() as edge:
        raw = pid_out
        spy_proc = subprocess.Popen(
            [spy, "record", "--pid", str(edge.process.pid), "--rate", "200", "--threads",
             "--gil", "--format", "raw", "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            drain_agent(edge, count, timeout=600)
        finally:
            spy_proc.send_signal(2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy_proc.wait(30)
    if not raw.exists():
        return {"error": "py-spy wrote no profile (ptrace not permitted?)"}
    return profile_summary(raw)


def round_result(
    n: int, publish_s: float, bare: dict[str, Any], full: dict[str, Any]
) -> dict[str, Any]:
    """One round: the bare subscriber's drain, then the agent's, of the same backlog."""
    bare_rate = (bare["received"] - 1) / bare["seconds"] if bare["seconds"] > 0 else 0.0
    processed = full["readings"] + full["native_events"] + full["rejected"]
    return {
        "publish_messages_per_s": round(n / publish_s, 1),
        "bare_subscriber": {
            "received": bare["received"], "seconds": round(bare["seconds"], 3),
            "messages_per_s": round(bare_rate, 1),
            "cpu_us_per_message": round(bare["cpu_seconds"] / bare["received"] * 1e6, 1),
        },
        "agent": full,
        "ratio_agent_to_bare": round(full["messages_per_s"] / bare_rate, 3) if bare_rate else 0.0,
        "ratio_cpu_per_message_bare_to_agent": round(
            bare["cpu_seconds"] / bare["received"] / (full["cpu_us_per_message"] / 1e6), 3)
        if full["cpu_us_per_message"] else 0.0,
        "all_processed": bool(
            bare["received"] == n and full["received"] == n and full["acked"] == n
            and processed == n and full["rejected"] == 0
        ),
    }


def log(text: str) -> None:
    print(f"[bench_ingest] {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.messages
    results: dict[str, Any] = {"messages": n, "qos": {}}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gh-ingest-")))
        broker = stack.enter_context(mosquitto(tmp / "mqtt", "queue_qos0_messages true\n"))
        vm = stack.enter_context(victoria_metrics(tmp / "vm"))
        db_url = f"sqlite:///{tmp / 'cloud.db'}"
        base, _ = stack.enter_context(cloud_process(db_url, tmp / "cloud"))
        for qos in args.qos:
            site = site_for(qos, broker.url, base, vm.url, tmp / f"edge-q{qos}")
            site.cloud.token = provision(db_url, {site.site_id: site})[site.site_id]
            topic = site_subscription(site.site_id)

            def agent(site: SiteConfig = site, qos: int = qos) -> Any:
                return edge_process(site, tmp / f"run-q{qos}")

            bare_subscriber(broker.port, topic, qos, n, prime=True)
            with agent() as edge:
                wait_connected(edge)
            rounds: list[dict[str, Any]] = []
            everything: list[Message] = []
            start = time.time() + LEAD
            for index in range(args.rounds):
                # fresh data each round (later timestamps): a resent reading is cheaper
                msgs = estate_messages(site, n, start=start, seed=3 + index)
                start = max(json.loads(p)["ts"] for _, p in msgs) + 1.0
                everything += msgs
                publish_s = publish_all(broker.port, msgs, qos)
                bare = bare_subscriber(broker.port, topic, qos, n, prime=False)
                with agent() as edge:
                    full = drain_agent(edge, n, timeout=max(120.0, n / 200))
                rounds.append(round_result(n, publish_s, bare, full))
                log(f"QoS {qos} round {index + 1}/{args.rounds}: ratio "
                    f"{rounds[-1]['ratio_agent_to_bare']:.2f}")
            msgs = everything
            kinds = Counter(t.split("/")[2] for t, _ in msgs)
            want = expected_samples(msgs)
            stored = stored_samples(vm, site.site_id, msgs, want, timeout=30)
            middle = sorted(rounds, key=lambda r: r["ratio_agent_to_bare"])[len(rounds) // 2]
            results["qos"][str(qos)] = {
                "kinds": dict(kinds),
                "rounds": rounds,
                **middle,
                "ratio_agent_to_bare_by_round": [r["ratio_agent_to_bare"] for r in rounds],
                "tsdb_samples_expected": want, "tsdb_samples_stored": stored,
                "none_dropped": bool(all(r["all_processed"] for r in rounds) and stored == want),
            }
            if args.profile and qos == 1:
                fresh = estate_messages(site, n, start=start, seed=99)
                results["profile_qos1"] = run_profile(
                    agent, fresh, broker.port, tmp / "profile.txt", n
                )
    return results


def summary(result: dict[str, Any]) -> str:
    lines = [f"ingest of {result['messages']} messages ({BUILDINGS}-building estate, mixed "
             "kinds), backlog drained by each consumer:"]
    for qos, r in result["qos"].items():
        a = r["agent"]
        lines.append(
            f"  QoS {qos}: bare paho subscriber {r['bare_subscriber']['messages_per_s']:>8.0f} "
            f"msg/s ({r['bare_subscriber']['cpu_us_per_message']:.0f} us CPU/msg) | edge agent, "
            f"whole pipeline {a['messages_per_s']:>8.0f} msg/s ({a['cpu_us_per_message']:.0f} us "
            f"CPU/msg, {a['cpu_utilisation']:.2f} cores) | ratio "
            f"{r['ratio_agent_to_bare']:.2f} (median of rounds "
            f"{', '.join(f'{x:.2f}' for x in r['ratio_agent_to_bare_by_round'])}) | "
            f"{a['events_raised']} events | TSDB "
            f"{r['tsdb_samples_stored']}/{r['tsdb_samples_expected']} samples | "
            f"none dropped: {r['none_dropped']}"
        )
    prof = result.get("profile_qos1")
    if prof and "self" in prof:
        lines.append("  profile (py-spy --gil, share of the CPU work by stage, inclusive):")
        for name, share in prof["stages"].items():
            lines.append(f"    {share:6.1%}  {name}")
        lines.append("  top functions (self time):")
        for name, share in prof["self"][:10]:
            lines.append(f"    {share:6.1%}  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--qos", type=int, nargs="+", default=[1, 0], choices=[0, 1])
    parser.add_argument("--rounds", type=int, default=3,
                        help="bare/agent pairs per QoS; the median ratio is reported")
    parser.add_argument("--profile", action="store_true", help="also profile the agent")
    parser.add_argument("--quick", action="store_true", help="3,000 messages (the tests)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = min(args.messages, 3000)
        args.rounds = 1
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    result = run(args)
    report("ingest", result, summary(result), args.json_out)
    return 0 if all(r["none_dropped"] for r in result["qos"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
