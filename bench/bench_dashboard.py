"""Dashboard data path: minute-summary intake, the energy and readings queries, the edge's
summary aggregation. Each figure comes with a baseline measured in the same run.

- intake: items/s through ``POST /api/v1/telemetry`` (in-process app on SQLite, batches of
  500, validation, merge, retention prune) vs a bare ``executemany`` INSERT of the same rows
  into a scratch table of the same database;
- energy: latency of ``GET /api/v1/energy`` over 24 h with 4 weeks of baseline history for
  ``--meters`` meters (loaded directly), vs ``GET /api/v1/sites`` (auth and round trip only);
- readings: latency of a 7-day ``GET /api/v1/devices/{id}/readings`` (10,080 minutes
  averaged to <= 1,500 points) vs the same baseline;
- edge: readings/s folded by ``CloudSummaryOutput.write`` vs a loop that only sums the
  same values into a dict.

    .venv/bin/python -m bench.bench_dashboard [--devices 20] [--minutes 1440] [--meters 6]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient
from sqlalchemy import insert, text

from cloud.app import create_app
from cloud.bootstrap import create_user, issue_gateway_token, provision_site
from cloud.dashboard import install
from cloud.settings import Settings
from cloud.telemetry_models import TelemetryMinute
from device_profiles.messages import Reading
from device_profiles.site import DeviceConfig
from edge.outputs.cloud_summary import CloudSummaryOutput

SECRET = "bench-secret-0123456789abcdef-dash"
PASSWORD = "bench-pass-123"


def median_latency(fn: Callable[[], Any], runs: int = 7) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def bench_intake(client: TestClient, app_db: Any, token: str, devices: int,
                 minutes: int) -> dict[str, Any]:
    start = math.floor((time.time() - minutes * 60) / 60) * 60
    items: list[dict[str, Any]] = [{"device_id": f"p{d}", "kind": "water_pump", "building": "B1",
              "ts": start + 60 * m, "count": 6,
              "values": {"accel1_rms": 0.1 + d * 0.001, "current_a": 2.0, "pressure_bar": 4.0},
              "max": {"accel1_rms": 0.2, "current_a": 2.5, "pressure_bar": 4.4}}
             for m in range(minutes) for d in range(devices)]
    headers = {"Authorization": f"Bearer {token}"}
    t = time.perf_counter()
    for i in range(0, len(items), 500):
        reply = client.post("/api/v1/telemetry", headers=headers,
                            json={"site_id": "bench", "items": items[i:i + 500]})
        reply.raise_for_status()
        assert reply.json()["stored"] == len(items[i:i + 500]), reply.text
    api_s = time.perf_counter() - t
    with app_db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE scratch (site_id TEXT, device_id TEXT, kind TEXT, "
                          "building TEXT, ts REAL, hour INT, samples INT, mean TEXT, "
                          "max TEXT, power_kw REAL, received_at REAL)"))
    rows = [{"site_id": "bench", "device_id": i["device_id"], "kind": i["kind"],
             "building": i["building"], "ts": i["ts"], "hour": int(i["ts"] // 3600),
             "samples": 6, "mean": json.dumps(i["values"]), "max": json.dumps(i["max"]),
             "power_kw": None, "received_at": 0.0} for i in items]
    t = time.perf_counter()
    with app_db.engine.begin() as conn:
        for i in range(0, len(rows), 500):
            conn.execute(text(
                "INSERT INTO scratch VALUES (:site_id, :device_id, :kind, :building, :ts, "
                ":hour, :samples, :mean, :max, :power_kw, :received_at)"), rows[i:i + 500])
    raw_s = time.perf_counter() - t
    return {"items": len(items), "api_items_per_s": round(len(items) / api_s, 1),
            "raw_insert_items_per_s": round(len(items) / raw_s, 1),
            "ratio": round(raw_s / api_s, 3)}


def load_meters(app_db: Any, meters: int) -> int:
    now = time.time()
    start = math.floor((now - 29 * 86400) / 60) * 60
    rows = []
    for m in range(int((now - start) // 60)):
        ts = start + 60 * m
        for k in range(meters):
            power = 2.0 + math.sin(ts / 86400 * 2 * math.pi) + k * 0.1
            rows.append({"site_id": "bench", "device_id": f"m{k}", "kind": "smart_meter",
                         "building": f"B{k % 2 + 1}", "ts": ts, "hour": int(ts // 3600),
                         "samples": 6, "mean": {"power_kw": power}, "max": {"power_kw": power},
                         "power_kw": power, "received_at": now})
    with app_db.engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(TelemetryMinute), rows[i:i + 5000])
    return len(rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{tmp}/cloud.db", secret_key=SECRET,
                            run_engine=False)
        app = create_app(settings)
        install(app)
        devices = ([DeviceConfig(id=f"p{d}", kind="water_pump") for d in range(args.devices)]
                   + [DeviceConfig(id=f"m{k}", kind="smart_meter", building=f"B{k % 2 + 1}")
                      for k in range(args.meters)])
        provision_site(settings, "bench", "Bench", devices)
        token = issue_gateway_token(settings, "bench")
        create_user(settings, "viewer", PASSWORD, "viewer", ["bench"])
        with TestClient(app) as client:
            db = app.state.ctx.db
            intake = bench_intake(client, db, token, args.devices, args.minutes)
            loaded = load_meters(db, args.meters)
            login = client.post("/api/v1/auth/login",
                                json={"username": "viewer", "password": PASSWORD}).json()
            user = {"Authorization": f"Bearer {login['access_token']}"}

            def get(path: str, **params: Any) -> Callable[[], Any]:
                def call() -> Any:
                    reply = client.get(path, headers=user, params=params)
                    reply.raise_for_status()
                    return reply.json()
                return call

            base = median_latency(get("/api/v1/sites"))
            energy = median_latency(get("/api/v1/energy", site_id="bench", hours=24))
            week = time.time() - 7 * 86400
            readings = median_latency(get("/api/v1/devices/m0/readings", site_id="bench",
                                          since=week))
            points = len(get("/api/v1/devices/m0/readings", site_id="bench", since=week)()
                         ["points"])
    edge = bench_edge(args.edge_readings)
    return {
        "benchmark": "dashboard", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "intake": intake,
        "queries": {"meter_minutes_loaded": loaded, "meters": args.meters,
                    "baseline_sites_ms": round(base * 1000, 2),
                    "energy_24h_4w_baseline_ms": round(energy * 1000, 2),
                    "energy_ratio": round(energy / base, 1),
                    "readings_7d_ms": round(readings * 1000, 2), "readings_points": points,
                    "readings_ratio": round(readings / base, 1)},
        "edge": edge,
    }


class _NullTransport:
    def post(self, site_id: str, items: Sequence[bytes]) -> None:
        return None

    def close(self) -> None:
        return None


def bench_edge(n: int) -> dict[str, Any]:
    readings = [Reading(site_id="bench", kind="water_pump", device_id=f"p{i % 20}",
                        ts=1_750_000_000.0 + i * 0.5,
                        values={"accel1_rms": 0.1, "current_a": 2.0, "pressure_bar": 4.0})
                for i in range(n)]
    out = CloudSummaryOutput("bench", _NullTransport(), start_thread=False)
    t = time.perf_counter()
    for i in range(0, n, 200):
        out.write(readings[i:i + 200])
    write_s = time.perf_counter() - t
    out.close()
    sums: dict[tuple[str, str], float] = {}
    t = time.perf_counter()
    for r in readings:
        for name, value in r.values.items():
            key = (r.device_id, name)
            sums[key] = sums.get(key, 0.0) + value
    base_s = time.perf_counter() - t
    return {"readings": n, "write_readings_per_s": round(n / write_s, 1),
            "bare_sum_readings_per_s": round(n / base_s, 1),
            "ratio": round(base_s / write_s, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=1440)
    parser.add_argument("--meters", type=int, default=6)
    parser.add_argument("--edge-readings", type=int, default=200_000)
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    i, q, e = result["intake"], result["queries"], result["edge"]
    print(f"\nintake: {i['api_items_per_s']:.0f} minute items/s through the API "
          f"({i['ratio']:.0%} of a bare INSERT's {i['raw_insert_items_per_s']:.0f}/s)")
    print(f"energy (24 h, 4-week baseline, {q['meters']} meters, {q['meter_minutes_loaded']} "
          f"minutes): {q['energy_24h_4w_baseline_ms']:.0f} ms, {q['energy_ratio']}x a bare "
          f"authenticated GET ({q['baseline_sites_ms']:.1f} ms)")
    print(f"readings (7 days -> {q['readings_points']} points): {q['readings_7d_ms']:.0f} ms, "
          f"{q['readings_ratio']}x the bare GET")
    print(f"edge: {e['write_readings_per_s']:.0f} readings/s folded into minutes "
          f"({e['ratio']:.0%} of a bare dict sum's {e['bare_sum_readings_per_s']:.0f}/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
