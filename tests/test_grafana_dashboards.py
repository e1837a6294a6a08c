"""The Grafana dashboards: well-formed, in sync with their generator, and every query works.

The integration part loads a real VictoriaMetrics with a simulated estate written through
the telemetry writer, lets it scrape a stand-in for the cloud's ``/metrics`` with the shipped
scrape config, and runs every panel query, annotation and template-variable query the way
Grafana would, checking that each returns the series its panel expects (non-empty, with the
labels its legend names) and, for the headline panels, the values known by construction.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.build_dashboards import DATASOURCE_UID, JSON_DIR, build_all, render
from device_profiles.loader import load_profiles
from device_profiles.site import TsdbConfig
from edge.outputs.tsdb import InfluxTelemetryWriter
from tests.servers_tsdb import Series, SimulatedEstate, VictoriaMetrics, simulated_estate

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = build_all()
RANGE = "6h"
RANGE_S = 6 * 3600
OPEN_ORDERS = {"P1": 1, "P2": 3, "P3": 2, "P4": 5}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["panels"])


def all_targets() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for name, board in DASHBOARDS.items():
        for panel in panels(board):
            for target in panel["targets"]:
                out.append((name, panel["title"], target))
    return out


# --- structure ------------------------------------------------------------------------------


def test_committed_json_is_what_the_generator_builds() -> None:
    committed = {p.name for p in JSON_DIR.glob("*.json")}
    assert committed == set(DASHBOARDS)
    for name, board in DASHBOARDS.items():
        assert (JSON_DIR / name).read_text(encoding="utf-8") == render(board), (
            f"{name} is stale: run python -m dashboards.build_dashboards"
        )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_well_formed(name: str) -> None:
    board = DASHBOARDS[name]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    defined = {v["name"] for v in board["templating"]["list"]}
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == DATASOURCE_UID
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__range"}
            assert used <= defined, f"{panel['title']}: undefined variables {used - defined}"
            assert used == defined, f"{panel['title']}: ignores variables {defined - used}"
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        values = [s["value"] for s in steps[1:]]
        assert steps[0]["value"] is None and values == sorted(values)


def test_limit_lines_come_from_the_profiles() -> None:
    profiles = load_profiles()
    pumps = {p["title"]: p for p in panels(DASHBOARDS["pumps.json"])}
    steps = pumps["Bearing vibration, drive end"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    accel = profiles["water_pump"].fields["accel1_rms"]
    assert {s["value"] for s in steps[1:]} == {accel.limit, accel.warn_high}
    lifts = {p["title"]: p for p in panels(DASHBOARDS["elevators.json"])}
    steps = lifts["Door cycle time"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    door = profiles["elevator"].fields["door_cycle_s"]
    assert {s["value"] for s in steps[1:]} == {door.warn_high, door.limit}


def test_provisioning_points_grafana_at_the_dashboards_and_the_data_source() -> None:
    sources = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources/gatehouse.yaml").read_text()
    )
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert by_uid[DATASOURCE_UID]["type"] == "prometheus"
    assert by_uid["gatehouse-influx"]["type"] == "influxdb"
    providers = yaml.safe_load(
        (ROOT / "dashboards/provisioning/dashboards/gatehouse.yaml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    scrape = yaml.safe_load((ROOT / "dashboards/scrape/gatehouse.yaml").read_text())
    assert {j["job_name"] for j in scrape["scrape_configs"]} == {
        "gatehouse-cloud",
        "gatehouse-edge",
    }


# --- every query against a real VictoriaMetrics ---------------------------------------------


class _CloudMetrics(BaseHTTPRequestHandler):
    """Stands in for the cloud's ``/metrics``: open work orders by priority."""

    site_id = ""

    def do_GET(self) -> None:
        lines = ["# TYPE gatehouse_work_orders_open gauge"] + [
            f'gatehouse_work_orders_open{{site="{self.site_id}",priority="{p}"}} {n}'
            for p, n in OPEN_ORDERS.items()
        ]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Loaded:
    vm: VictoriaMetrics
    estate: SimulatedEstate
    now: float

    @property
    def site_id(self) -> str:
        return self.estate.site.site_id

    def expand(self, expr: str, building: str = ".*") -> str:
        """Substitute Grafana's variables: this site, ``building`` (all), a 6 h range."""
        return (
            expr.replace("$site", self.site_id)
            .replace("$building", building)
            .replace("$__range", RANGE)
        )

    def run(self, target: dict[str, Any], building: str = ".*") -> list[Series]:
        expr = self.expand(target["expr"], building)
        if target["instant"]:
            return self.vm.query(expr, self.now)
        return self.vm.query_range(expr, self.now - RANGE_S, self.now, "60s")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    workdir = tmp_path_factory.mktemp("vm-grafana")
    site_id = f"gr-{uuid.uuid4().hex[:10]}"
    handler = type("Cloud", (_CloudMetrics,), {"site_id": site_id})
    cloud = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=cloud.serve_forever, daemon=True).start()
    scrape = yaml.safe_load((ROOT / "dashboards/scrape/gatehouse.yaml").read_text())
    scrape["global"]["scrape_interval"] = "1s"
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    jobs["gatehouse-cloud"]["static_configs"] = [
        {"targets": [f"127.0.0.1:{cloud.server_address[1]}"]}
    ]
    scrape["scrape_configs"] = [jobs["gatehouse-cloud"]]
    config = workdir / "scrape.yaml"
    config.write_text(yaml.safe_dump(scrape))
    vm = VictoriaMetrics(workdir=workdir, extra_args=(f"-promscrape.config={config}",))
    vm.start()
    try:
        vm.wait_for(f'gatehouse_work_orders_open{{site="{site_id}"}}', lambda s: len(s) == 4)
        now = float(int(time.time()))
        estate = simulated_estate(site_id, end=now - 1)
        writer = InfluxTelemetryWriter(TsdbConfig(url=vm.url), estate.site, load_profiles())
        with writer:
            writer.write(estate.readings)
            writer.write_events(estate.events)
        total = len(estate.readings)
        vm.wait_for(
            f'{{__name__=~"smart_meter_power_kw|elevator_moving|water_pump_current_a|'
            f'access_gate_passages|camera_fps", site="{site_id}"}}',
            lambda s: sum(len(x["values"]) for x in s) == total,
            timeout=60,
        )
        yield Loaded(vm=vm, estate=estate, now=now)
    finally:
        vm.stop()
        cloud.shutdown()
        cloud.server_close()


def legend_labels(legend: str) -> set[str]:
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("board", "title", "target"),
    all_targets(),
    ids=[f"{b}:{t}:{x['refId']}" for b, t, x in all_targets()],
)
def test_every_panel_query_returns_the_series_it_expects(
    loaded: Loaded, board: str, title: str, target: dict[str, Any]
) -> None:
    series = loaded.run(target)
    assert series, f"{board} / {title}: {target['expr']} returned nothing"
    for s in series:
        missing = legend_labels(target["legendFormat"]) - set(s["metric"])
        assert not missing, f"{board} / {title}: series {s['metric']} lacks {missing}"
        values = s["values"] if "values" in s else [s["value"]]
        assert values, f"{board} / {title}: empty series {s['metric']}"


@pytest.mark.integration
def test_choosing_a_building_keeps_only_that_building(loaded: Loaded) -> None:
    filtered = [(b, t, x) for b, t, x in all_targets() if "$building" in x["expr"]]
    assert len(filtered) > 20
    shown = 0
    for board, title, target in filtered:
        for s in loaded.run(target, building="B2"):
            shown += 1
            assert s["metric"].get("building", "B2") == "B2", f"{board} / {title}: {s['metric']}"
            device = s["metric"].get("device")
            assert device is None or device.startswith("b2-"), f"{board} / {title}: {device}"
    assert shown > 20


@pytest.mark.integration
@pytest.mark.parametrize("board", sorted(DASHBOARDS))
def test_annotations_and_variables_resolve(loaded: Loaded, board: str) -> None:
    dash = DASHBOARDS[board]
    for ann in dash["annotations"]["list"]:
        if ann.get("builtIn"):
            continue
        series = loaded.run({"expr": ann["expr"], "instant": False})
        assert series, f"{board}: annotation {ann['name']} matched nothing"
        assert {s["metric"]["device"] for s in series} == {"b2-meter-2"}
    for var in dash["templating"]["list"]:
        query = loaded.expand(var["query"]["query"])
        match = re.fullmatch(r"label_values\((?:(.*),\s*)?(\w+)\)", query)
        assert match, query
        params = {"match[]": match.group(1)} if match.group(1) else None
        values = json.loads(loaded.vm.get_text(f"/api/v1/label/{match.group(2)}/values", params))
        expected = {"site": {loaded.site_id}, "building": {"B1", "B2"}}[var["name"]]
        assert expected <= set(values["data"]), f"{board}: ${var['name']} -> {values}"


def panel(board: str, title: str) -> dict[str, Any]:
    return next(p for p in panels(DASHBOARDS[board]) if p["title"] == title)


def instant(loaded: Loaded, board: str, title: str, ref: int = 0) -> dict[str, float]:
    """``{legend label values: value}`` of an instant panel query."""
    target = panel(board, title)["targets"][ref]
    out = {}
    for s in loaded.run(target):
        key = ",".join(
            s["metric"].get(k, "") for k in sorted(legend_labels(target["legendFormat"]))
        )
        out[key] = float(s["value"][1])
    return out


@pytest.mark.integration
def test_the_estate_overview_shows_what_happened(loaded: Loaded) -> None:
    devices = len(loaded.estate.site.all_devices())
    silent = len(loaded.estate.silent)
    assert instant(loaded, "estate.json", "Devices online") == {"": devices - silent}
    assert instant(loaded, "estate.json", "Devices silent") == {"": silent}
    assert instant(loaded, "estate.json", "Alarms today") == {"": loaded.estate.critical}
    assert instant(loaded, "estate.json", "Open work orders") == {"": sum(OPEN_ORDERS.values())}
    by_priority = instant(loaded, "estate.json", "Open work orders by priority")
    assert by_priority == {p: float(n) for p, n in OPEN_ORDERS.items()}
    gates_online = instant(loaded, "estate.json", "Devices online by kind", ref=0)
    assert gates_online == {"": 1.0}  # access_gate first: gate-2 is silent


@pytest.mark.integration
def test_pump_forecast_and_energy_per_building(loaded: Loaded) -> None:
    forecast = instant(loaded, "pumps.json", "Forecast: hours until the vibration limit")
    assert forecast == loaded.estate.latest_pump_forecast
    energy = instant(loaded, "energy.json", "Energy in range per building")
    last_week = instant(loaded, "energy.json", "Energy in range per building", ref=1)
    assert set(energy) == set(last_week) == {"B1", "B2"}
    assert energy["B2"] > last_week["B2"] * 1.05  # the spike adds energy this week
    ratio = instant(loaded, "energy.json", "Now against baseline")
    assert ratio["B1"] == pytest.approx(1.0, abs=0.2)
