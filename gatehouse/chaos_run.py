"""One fault-injection run: start the stack as separate processes, inject the plan's faults
under load, drain, stop, audit, and return the JSON report.

The stack: a private Mosquitto (persistent sessions survive its restarts), ``gatehouse cloud
serve`` on an SQLite file, ``gatehouse edge`` whose data folder is a small tmpfs of its own,
``gatehouse simulate estate`` (telemetry at QoS 1 with random detector faults), the
native-event load with its ground truth, and a fake telemetry database. Faults are
injected one at a time with a gap between them, so each meets a running system.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatehouse.chaos_audit import audit, integrity, load_fault_truth, read_cloud, read_edge_stores
from gatehouse.chaos_disk import MountUnavailable, SmallDisk
from gatehouse.chaos_hostile import hostile_messages, publish_all
from gatehouse.chaos_load import NATIVE_TYPES, FakeTsdb, NativeEventLoad
from gatehouse.chaos_plan import ChaosPlan, FaultKind
from gatehouse.chaos_procs import (
    Broker,
    ChaosSetupError,
    ManagedProcess,
    child_env,
    free_port,
    gatehouse_argv,
    get_json,
    get_text,
)

log = logging.getLogger("gatehouse.chaos")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {``name{labels}``: value} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


class ChaosRun:
    """A run of ``plan`` in ``workdir`` (created; the edge's disk is mounted under it)."""

    def __init__(self, plan: ChaosPlan, workdir: Path, *, seed: int = 7,
                 progress: bool = True, database_url: str | None = None) -> None:
        """``database_url``: the cloud's database (an empty PostgreSQL database, say);
        default an SQLite file in ``workdir``."""
        self.plan = plan
        self.database_url = database_url
        self.workdir = workdir.resolve()
        self.seed = seed
        self.progress = progress
        self.site_id = f"chaos-{secrets.token_hex(3)}"
        self.faults_done: dict[str, Any] = {
            "broker_restarts": 0, "cloud_outages_s": [], "edge_kills": 0, "cloud_kills": 0,
            "disk_fills": 0,
        }
        self.kill_integrity: list[str] = []
        self.disk: dict[str, Any] = {}
        self.notes: list[str] = []
        self.broker_state_lost = False
        self.edge_metrics: dict[str, float] = {}
        self.edge_health_at_end: dict[str, Any] | None = None
        self.hostile_result: dict[str, Any] = {}
        self.edge_restarts: list[float] = []
        self._gates: list[str] = []
        self._edge_port = free_port()
        self._cloud_port = free_port()

    def say(self, message: str) -> None:
        if self.progress:
            print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)

    # ----- the stack -------------------------------------------------------------------

    def _edge_ready(self) -> bool:
        health = get_json(f"http://127.0.0.1:{self._edge_port}/healthz")
        return bool(health and health.get("mqtt", {}).get("connected"))

    def _cloud_ready(self) -> bool:
        health = get_json(f"http://127.0.0.1:{self._cloud_port}/healthz")
        return health is not None

    def edge_health(self) -> dict[str, Any] | None:
        return get_json(f"http://127.0.0.1:{self._edge_port}/healthz")

    def _write_sites(self, data_dir: Path, tsdb_url: str, token_file: Path,
                     broker_url: str) -> tuple[Path, Path, list[str]]:
        from device_profiles.site import (
            CloudConfig,
            DeviceConfig,
            EstateLayout,
            MqttConfig,
            SiteConfig,
            TsdbConfig,
            dump_site,
        )

        gates = [f"chaos-gate-{i}" for i in range(1, self.plan.gates + 1)]
        estate = EstateLayout(buildings=self.plan.buildings, floors=self.plan.floors,
                              gates=2, cameras_per_building=0)
        edge_site = SiteConfig(
            site_id=self.site_id, gateway_id="gw-chaos", name="Chaos Court",
            data_dir=str(data_dir),
            mqtt=MqttConfig(url=broker_url, client_id=f"gatehouse-edge-{self.site_id}",
                            session_expiry=86400.0),
            cloud=CloudConfig(url=f"http://127.0.0.1:{self._cloud_port}",
                              token_file=str(token_file), retry_initial=0.2,
                              retry_max=self.plan.retry_max_s, timeout=5.0),
            tsdb=TsdbConfig(url=tsdb_url, token="chaos", flush_interval=0.5),
            estate=estate,
            devices=[DeviceConfig(id=g, kind="access_gate", building="estate", floor=0)
                     for g in gates],
        )
        sim_site = edge_site.model_copy(update={"devices": []})
        edge_path, sim_path = self.workdir / "site.yaml", self.workdir / "sim-site.yaml"
        dump_site(edge_site, edge_path)
        dump_site(sim_site, sim_path)
        return edge_path, sim_path, gates

    def _provision(self, database_url: str, site_path: Path, token_file: Path) -> None:
        from cloud.bootstrap import issue_gateway_token, provision_site
        from cloud.settings import Settings
        from device_profiles.site import load_site

        settings = Settings(database_url=database_url, secret_key=secrets.token_urlsafe(32),
                            dev_mode=True)
        site = load_site(site_path)
        provision_site(settings, site.site_id, site.name, site.all_devices())
        token_file.write_text(issue_gateway_token(settings, site.site_id), encoding="utf-8")
        token_file.chmod(0o600)

    # ----- the run ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        plan = self.plan
        started = time.time()
        self.workdir.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        disk = SmallDisk(self.workdir / "edge-disk", plan.disk_mb)
        try:
            disk.mount()
        except MountUnavailable as exc:
            self.notes.append(f"disk fill skipped: {exc}")
            self.say(f"cannot mount the edge's small disk ({exc}); the disk fill is skipped")
        data_dir = disk.path / "edge"
        data_dir.mkdir(parents=True, exist_ok=True)
        database_url = self.database_url or f"sqlite:///{self.workdir / 'cloud.db'}"
        token_file = self.workdir / "gateway.token"
        tsdb = FakeTsdb()
        tsdb.start()
        broker = Broker(self.workdir / "broker")
        env = child_env()
        edge_path, sim_path, gates = self._write_sites(data_dir, tsdb.url, token_file,
                                                       broker.url)
        self._gates = gates
        self._provision(database_url, edge_path, token_file)
        cloud = ManagedProcess(
            "cloud", gatehouse_argv("cloud", "--database-url", database_url, "--dev", "serve",
                                    "--port", str(self._cloud_port)),
            logs / "cloud.log", ready=self._cloud_ready, env=env)
        edge = ManagedProcess(
            "edge", gatehouse_argv("edge", "--config", str(edge_path), "--http-port",
                                   str(self._edge_port), "--telemetry-spool-mb",
                                   str(plan.spool_mb), "--reserve-mb", str(plan.reserve_mb),
                                   "--low-water-mb", str(plan.low_water_mb)),
            logs / "edge.log", ready=self._edge_ready, env=env)
        horizon = max(600.0, plan.expected_seconds() * plan.sim_speed)
        sim_truth = self.workdir / "sim-truth.jsonl"
        simulator = ManagedProcess(
            "simulator", gatehouse_argv(
                "simulate", "estate", "--config", str(sim_path), "--broker", broker.url,
                "--speed", str(plan.sim_speed), "--qos", "1", "--seed", str(self.seed),
                "--random-faults", str(plan.random_faults), "--random-horizon", str(horizon),
                "--truth", str(sim_truth), "--stats-every", "0"),
            logs / "simulator.log", env=env)
        load = NativeEventLoad(
            host="127.0.0.1", port=broker.port, site_id=self.site_id, gates=gates,
            total=plan.events, rate=plan.events / plan.expected_seconds(),
            truth_path=self.workdir / "native-truth.jsonl")
        processes = [simulator, edge, cloud]
        try:
            broker.start()
            cloud.start()
            edge.start()
            simulator.start()
            self.say(f"stack up: site {self.site_id}, broker :{broker.port}, cloud "
                     f":{self._cloud_port}, edge :{self._edge_port}; {plan.events} events at "
                     f"{load.rate:.0f}/s over ~{plan.expected_seconds():.0f}s")
            load.start()
            for kind in plan.schedule():
                time.sleep(plan.gap_s)
                self._inject(kind, broker=broker, cloud=cloud, edge=edge, disk=disk,
                             tsdb=tsdb, data_dir=data_dir)
                self.say(f"{kind} done; load {load.progress()}")
            self.say("faults done; finishing the load")
            if not load.wait_confirmed(timeout=max(120.0, plan.expected_seconds())):
                self.notes.append(f"{len(load.unconfirmed)} events never acknowledged by "
                                  "the broker (not in the ground truth)")
            load.stop()
            simulator.terminate()
            drained = self._drain(load.confirmed.keys(), database_url, edge)
            self.say(f"drained in {drained:.1f}s" if drained >= 0 else "drain timed out")
            self.edge_metrics = parse_metrics(
                get_text(f"http://127.0.0.1:{self._edge_port}/metrics") or "")
            self.edge_health_at_end = self.edge_health()
            edge_exit = edge.terminate()
            if edge_exit != 0:
                self.notes.append(f"edge exited with {edge_exit} on SIGTERM")
            cloud.terminate()
            broker.stop()
            broker_errors = broker.errors()
            if broker_errors:
                self.notes.append(f"broker log has {len(broker_errors)} error line(s), first: "
                                  f"{broker_errors[0]}")
            self.broker_state_lost = broker.persistence_failed()
            stores = read_edge_stores(data_dir)
            events, orders = read_cloud(database_url, self.site_id)
            result = audit(load.confirmed, events, orders, stores,
                           load_fault_truth(sim_truth), [t for _, t, _ in NATIVE_TYPES],
                           edge_restarts=self.edge_restarts)
            checks = {
                "outbox": integrity(data_dir / "outbox.db"),
                "deadletters": integrity(data_dir / "deadletters.db"),
            }
            if self.database_url is None:
                checks["cloud"] = integrity(self.workdir / "cloud.db")
            else:
                self.notes.append("cloud database is not SQLite: its integrity is the "
                                  "server's business (not checked)")
            report = self._report(plan, started, result.as_dict(), stores.evicted, checks,
                                  tsdb, load.progress(), drained)
        finally:
            load.stop()
            for proc in processes:
                proc.terminate(grace=10)
            broker.stop()
            tsdb.close()
            if disk.mounted:
                shutil.copytree(data_dir, self.workdir / "edge-data", dirs_exist_ok=True)
            disk.unmount()
        (self.workdir / "report.json").write_text(json.dumps(report, indent=2),
                                                  encoding="utf-8")
        return report

    def _inject(self, kind: FaultKind, *, broker: Broker, cloud: ManagedProcess,
                edge: ManagedProcess, disk: SmallDisk, tsdb: FakeTsdb, data_dir: Path) -> None:
        plan = self.plan
        if kind == "broker_restart":
            broker.stop()
            time.sleep(plan.broker_down_s)
            broker.start()
            self.faults_done["broker_restarts"] += 1
        elif kind == "edge_kill":
            edge.kill()
            self.kill_integrity.append(integrity(data_dir / "outbox.db"))
            time.sleep(plan.edge_down_s)
            self.edge_restarts.append(time.time())
            edge.start()
            self.faults_done["edge_kills"] += 1
        elif kind == "cloud_kill":
            cloud.kill()
            cloud.start()
            self.faults_done["cloud_kills"] += 1
        elif kind == "cloud_outage":
            t0 = time.monotonic()
            cloud.terminate()
            tsdb.up = False
            time.sleep(plan.cloud_outage_s)
            tsdb.up = True
            cloud.start()
            self.faults_done["cloud_outages_s"].append(round(time.monotonic() - t0, 1))
        elif kind == "disk_fill":
            self._fill_disk(disk, edge)
        elif kind == "hostile":
            self._hostile(broker, edge)

    def _rejects(self) -> dict[str, float]:
        metrics = parse_metrics(get_text(f"http://127.0.0.1:{self._edge_port}/metrics") or "")
        prefix = 'gatehouse_edge_rejects_total{reason="'
        return {k[len(prefix):-2]: v for k, v in metrics.items() if k.startswith(prefix)}

    def _hostile(self, broker: Broker, edge: ManagedProcess) -> None:
        """Publish the plan's hostile messages; the edge must refuse and count every one
        (its ``rejects_total`` grows by exactly as many as the broker took)."""
        before = self._rejects()
        messages = hostile_messages(self.site_id, "b1-pump-1", self._gates[0],
                                    self.plan.hostile, seed=self.seed)
        acked = publish_all("127.0.0.1", broker.port, messages)
        counted: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            after = self._rejects()
            counted = {r: after.get(r, 0.0) - before.get(r, 0.0) for r in after}
            if sum(counted.values()) >= acked:
                break
            time.sleep(0.5)
        self.hostile_result = {
            "sent": len(messages), "acked_by_broker": acked,
            "refused_counted": int(sum(counted.values())),
            "by_reason": {r: int(v) for r, v in sorted(counted.items()) if v},
            "edge_alive": edge.running,
        }

    def _fill_disk(self, disk: SmallDisk, edge: ManagedProcess) -> None:
        if not disk.mounted:
            self.disk = {"skipped": True}
            return
        ballast = disk.fill()
        reasons: set[str] = set()
        health: dict[str, Any] = {}
        deadline = time.monotonic() + self.plan.disk_full_s
        while time.monotonic() < deadline:
            health = self.edge_health() or {}
            if health.get("status") == "degraded":
                reasons.update(str(r) for r in health.get("reasons", []))
            time.sleep(0.5)
        alive_while_full = edge.running
        disk.free()
        recovered_s: float | None = None
        start = time.monotonic()
        while time.monotonic() - start < self.plan.recover_timeout_s:
            health = self.edge_health() or {}
            if health.get("status") == "ok":
                recovered_s = round(time.monotonic() - start, 1)
                break
            time.sleep(0.5)
        self.faults_done["disk_fills"] += 1
        self.disk = {
            "skipped": False, "size_mb": disk.size_mb, "ballast_bytes": ballast,
            "held_s": self.plan.disk_full_s, "edge_alive_while_full": alive_while_full,
            "degraded_reasons_seen": sorted(reasons), "recovered_s": recovered_s,
        }
        if recovered_s is None:
            self.disk["health_after_free"] = health

    def _drain(self, truth: Any, database_url: str, edge: ManagedProcess) -> float:
        """Wait until every ground-truth event is in the cloud and the edge's event lanes
        are empty; return the seconds it took (-1 after ``drain_timeout_s``)."""
        from sqlalchemy.exc import OperationalError

        wanted = set(truth)
        start = time.monotonic()
        while time.monotonic() - start < self.plan.drain_timeout_s:
            health = self.edge_health() or {}
            outbox = health.get("outbox", {})
            pending = int(outbox.get("critical", 0)) + int(outbox.get("events", 0))
            if pending == 0 and edge.running:
                try:
                    events, _ = read_cloud(database_url, self.site_id)
                except OperationalError as exc:
                    log.info("cloud database busy while draining: %s", exc)
                    events = []
                if events and wanted <= {e.event_id for e in events}:
                    return time.monotonic() - start
            time.sleep(2.0)
        return -1.0

    def _report(self, plan: ChaosPlan, started: float, delivery: dict[str, Any],
                evicted: dict[str, int], checks: dict[str, str], tsdb: FakeTsdb,
                load: dict[str, int], drained: float) -> dict[str, Any]:
        reported = int(self.edge_metrics.get(
            'gatehouse_edge_outbox_evicted_items{lane="telemetry"}', -1))
        dropped = sum(v for k, v in self.edge_metrics.items()
                      if k.startswith("gatehouse_edge_telemetry_dropped_total"))
        telemetry = {
            "evicted_counted": evicted.get("telemetry", 0),
            "evicted_reported_by_edge": reported,
            "evictions_equal": evicted.get("telemetry", 0) == reported,
            "dropped_reported_last_edge_run": int(dropped),
            "tsdb_lines_stored": tsdb.lines,
            "tsdb_writes_refused": tsdb.refused,
        }
        integrity_ok = all(v == "ok" for v in checks.values()) and all(
            v == "ok" for v in self.kill_integrity)
        failures: list[str] = []
        if delivery["events_lost"]:
            failures.append(f"{delivery['events_lost']} events lost")
        if delivery["events_duplicated"]:
            failures.append(f"{delivery['events_duplicated']} events duplicated")
        if delivery["work_orders_duplicated"]:
            failures.append(f"{delivery['work_orders_duplicated']} duplicate work orders")
        if any(delivery["outbox_left"].values()):
            failures.append(f"events left in the edge's outbox: {delivery['outbox_left']}")
        if delivery["cloud_rejected"]:
            failures.append(f"{delivery['cloud_rejected']} events rejected by the cloud")
        if not telemetry["evictions_equal"]:
            failures.append("telemetry evictions counted differ from what the edge reports")
        if not integrity_ok:
            failures.append("SQLite integrity check failed")
        if drained < 0:
            failures.append("the backlog did not drain in time")
        if self.broker_state_lost:
            failures.append(
                "the broker could not save its state (see notes), so its restart forgot the "
                "edge's session: events lost then are the test broker's, not the edge's; "
                "give the broker a folder it can write")
        if self.disk and not self.disk.get("skipped"):
            if not self.disk.get("edge_alive_while_full"):
                failures.append("the edge died while the disk was full")
            if not self.disk.get("degraded_reasons_seen"):
                failures.append("the edge never reported degraded while the disk was full")
            if self.disk.get("recovered_s") is None:
                failures.append("the edge did not return to ok after the disk was freed")
        expected = {"broker_restarts": plan.broker_restarts, "edge_kills": plan.edge_kills,
                    "cloud_kills": plan.cloud_kills}
        for key, want in expected.items():
            if self.faults_done[key] != want:
                failures.append(f"{key}: {self.faults_done[key]} of {want} done")
        if len(self.faults_done["cloud_outages_s"]) != plan.cloud_outages:
            failures.append("not every cloud outage was done")
        if plan.hostile:
            h = self.hostile_result
            took, counted = h.get("acked_by_broker"), h.get("refused_counted")
            if took != plan.hostile or counted != plan.hostile:
                failures.append(f"hostile messages: {plan.hostile} sent, {counted} refused "
                                f"and counted (the broker took {took})")
            elif not h["edge_alive"]:
                failures.append("the edge died under hostile messages")
        return {
            "suite": "gatehouse chaos",
            "plan": plan.name,
            "started_utc": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 1),
            "site_id": self.site_id,
            "events_sent": delivery["events_sent"],
            "events_received": delivery["events_received"],
            "events_lost": delivery["events_lost"],
            "events_duplicated": delivery["events_duplicated"],
            "work_orders_duplicated": delivery["work_orders_duplicated"],
            "telemetry_evicted": telemetry["evicted_counted"],
            "sqlite_integrity": "ok" if integrity_ok else "FAILED",
            "ok": not failures,
            "failures": failures,
            "faults": {**self.faults_done, "disk": self.disk, "hostile": self.hostile_result},
            "delivery": delivery,
            "telemetry": telemetry,
            "integrity": {**checks, "outbox_after_each_edge_kill": self.kill_integrity},
            "load": load,
            "drain_s": round(drained, 1),
            "edge_health_at_end": self.edge_health_at_end,
            "edge_metrics_at_end": {k.removeprefix("gatehouse_edge_"): v
                                    for k, v in sorted(self.edge_metrics.items()) if v},
            "plan_parameters": plan.as_dict(),
            "notes": self.notes,
        }


def run_chaos(plan: ChaosPlan, workdir: Path, *, seed: int = 7, progress: bool = True,
              database_url: str | None = None) -> dict[str, Any]:
    """Run ``plan`` in ``workdir``; return the report (also written to ``report.json``).

    ``database_url``: the cloud's database (default: SQLite in ``workdir``). Raises
    :class:`ChaosSetupError` when a process of the stack cannot start (for example no
    ``mosquitto`` binary)."""
    return ChaosRun(plan, workdir, seed=seed, progress=progress,
                    database_url=database_url).run()


__all__ = ["ChaosRun", "ChaosSetupError", "parse_metrics", "run_chaos"]
