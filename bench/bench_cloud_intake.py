"""Cloud intake throughput: events/s through ``POST /api/v1/events`` into the database.

Scenarios (each on a fresh database, a real ``gatehouse cloud serve`` subprocess):
- SQLite, 1 worker;
- PostgreSQL, 1 worker and 2 workers.
Baseline, measured in the same run on the same database: a bare executemany INSERT of the same
event rows into a scratch table (no HTTP, no validation, no work orders). The ratio says what
fraction of the raw insert speed the full intake keeps.

Every event is unique (so all are accepted); events spread over ``--devices`` devices and the
elevator's event types, so most attach to an open order. At the end the benchmark checks that
there is exactly one order per (device, type) and that the counts add up.

    .venv/bin/python bench/bench_cloud_intake.py [--events 60000] [--batch 500] [--clients 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.bootstrap import issue_gateway_token, provision_site
from cloud.settings import Settings
from device_profiles.messages import Event, make_event_id

SECRET = "bench-secret-0123456789abcdef"
TYPES = ["elevator.door_fault", "elevator.leveling_error", "elevator.abnormal_vibration",
         "elevator.door_wear", "elevator.sudden_change"]


def make_batches(n: int, batch: int, devices: int) -> list[bytes]:
    events = []
    for i in range(n):
        device = f"elev-{i % devices}"
        type_ = TYPES[i % len(TYPES)]
        ts = 1_750_000_000.0 + i
        events.append(Event(
            event_id=make_event_id("bench", device, type_, ts, "raised"), site_id="bench",
            gateway_id="gw-1", device_id=device, kind="elevator", type=type_,
            severity="warning", state="raised", ts=ts, evidence={"value": 1.5, "score": 3.2},
        ).model_dump(mode="json"))
    return [json.dumps({"events": events[i:i + batch]}).encode()
            for i in range(0, n, batch)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(url: str, workers: int, workdir: Path) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, GATEHOUSE_SECRET_KEY=SECRET, GATEHOUSE_DATABASE_URL=url,
               GATEHOUSE_RUN_ENGINE="false")
    log = open(workdir / f"cloud-{port}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatehouse", "cloud", "serve", "--port", str(port),
         "--workers", str(workers), "--no-engine"],
        env=env, stdout=log, stderr=log, cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"cloud did not start; see {workdir}")
            time.sleep(0.1)
        yield base
    except Exception:
        log.flush()
        sys.stderr.write((workdir / f"cloud-{port}.log").read_text()[-3000:])
        raise
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def run_intake(base: str, token: str, batches: list[bytes], clients: int) -> float:
    """Post every batch from ``clients`` threads sharing one connection pool; events/s."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(timeout=120, limits=limits) as client:
        client.post(base + "/api/v1/events", content=batches[0],
                    headers=headers).raise_for_status()
        todo = batches[1:]

        def post(body: bytes) -> int:
            reply = client.post(base + "/api/v1/events", content=body, headers=headers)
            reply.raise_for_status()
            return len(reply.json()["accepted"])

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            counted = sum(pool.map(post, todo))
        elapsed = time.perf_counter() - start
    expected = sum(len(json.loads(b)["events"]) for b in todo)
    if counted != expected:
        raise RuntimeError(f"accepted {counted} of {expected}")
    return counted / elapsed


def bare_insert(url: str, batches: list[bytes]) -> float:
    """Baseline: the same rows, executemany into a scratch table, one transaction per batch."""
    engine = create_engine(url)
    rows = [
        [{"event_id": "b" + e["event_id"], "site_id": e["site_id"], "device_id": e["device_id"],
          "type": e["type"], "state": e["state"], "ts": e["ts"],
          "evidence": json.dumps(e["evidence"])} for e in json.loads(b)["events"]]
        for b in batches[1:]
    ]
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE TABLE bench_raw (event_id VARCHAR(64) PRIMARY KEY, site_id VARCHAR(64), "
            "device_id VARCHAR(128), type VARCHAR(64), state VARCHAR(16), ts FLOAT, "
            "evidence TEXT)"))
    stmt = text("INSERT INTO bench_raw VALUES (:event_id, :site_id, :device_id, :type, :state, "
                ":ts, :evidence)")
    start = time.perf_counter()
    for chunk in rows:
        with engine.begin() as conn:
            conn.execute(stmt, chunk)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return sum(len(c) for c in rows) / elapsed


def check_orders(url: str, n_events: int) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        keys = conn.execute(text(
            "SELECT COUNT(*), COUNT(DISTINCT device_id || '/' || event_type), "
            "COALESCE(SUM(event_count), 0) FROM work_orders")).one()
        stored = conn.execute(text("SELECT COUNT(*) FROM events")).scalar_one()
    engine.dispose()
    orders, distinct, counted = int(keys[0]), int(keys[1]), int(keys[2])
    if orders != distinct:
        raise RuntimeError(f"{orders} orders for {distinct} (device, type) pairs")
    if stored != n_events:
        raise RuntimeError(f"{stored} events stored, {n_events} sent")
    return {"orders": orders, "events_counted_on_orders": counted}


@contextlib.contextmanager
def pg_database(admin: str) -> Iterator[str]:
    import psycopg

    name = f"gh_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scenario(url: str, workers: int, batches: list[bytes], clients: int,
             workdir: Path) -> dict[str, object]:
    settings = Settings(database_url=url, secret_key=SECRET)
    provision_site(settings, "bench", "Benchmark", [])
    token = issue_gateway_token(settings, "bench")
    with serve(url, workers, workdir) as base:
        rate = run_intake(base, token, batches, clients)
    n_events = sum(len(json.loads(b)["events"]) for b in batches)
    integrity = check_orders(url, n_events)
    baseline = bare_insert(url, batches)
    return {"workers": workers, "events_per_s": round(rate, 1),
            "baseline_insert_events_per_s": round(baseline, 1),
            "ratio_to_baseline": round(rate / baseline, 4), **integrity}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4, help="concurrent gateways")
    parser.add_argument("--pg-admin", default=os.environ.get(
        "GATEHOUSE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    batches = make_batches(args.events, args.batch, args.devices)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="gh-bench-") as tmp:
        workdir = Path(tmp)
        results["sqlite_1_worker"] = scenario(
            f"sqlite:///{workdir}/bench.db", 1, batches, args.clients, workdir)
        if not args.skip_pg:
            for workers in (1, 2):
                with pg_database(args.pg_admin) as url:
                    results[f"postgresql_{workers}_workers"] = scenario(
                        url, workers, batches, args.clients, workdir)
    report = {
        "benchmark": "cloud_intake", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": args.events, "batch": args.batch, "devices": args.devices,
        "clients": args.clients, "cpus": os.cpu_count(), "results": results,
    }
    print(json.dumps(report, indent=2))
    print()
    for name, r in results.items():
        assert isinstance(r, dict)
        print(f"{name:24s} {r['events_per_s']:>9.0f} events/s  "
              f"(bare INSERT {r['baseline_insert_events_per_s']:.0f}/s, "
              f"ratio {r['ratio_to_baseline']:.2f}); {r['orders']} orders, one per device/type")
    return 0


if __name__ == "__main__":
    sys.exit(main())
