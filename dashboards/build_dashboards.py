"""Build the Grafana dashboards in ``dashboards/json/`` from code and the device profiles.

Why code: five dashboards share a data source, template variables and panel shapes, and
their limit lines must match the profiles (a pump's vibration limit, an elevator's door-cycle
warning). Generating them keeps every limit equal to the profile's value and every query in
one reviewed place. ``python dashboards/build_dashboards.py`` rewrites the JSON files;
``--check`` exits non-zero when a committed file differs from what this code builds (a test
runs the same comparison).

Queries are PromQL/MetricsQL against VictoriaMetrics, over the series the edge's telemetry
writer produces (``{kind}_{field}{site, building, device[, floor]}`` and ``edge_events_*``)
and the cloud's work-order gauges scraped by VictoriaMetrics (``gatehouse_work_orders_open``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_profiles.loader import load_profiles
from device_profiles.schema import DeviceProfile

HERE = Path(__file__).resolve().parent
JSON_DIR = HERE / "json"
DATASOURCE_UID = "gatehouse-vm"
"""The uid of the Prometheus-type data source pointing at VictoriaMetrics (provisioning)."""
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
SITE = 'site=~"$site"'
SITE_BUILDING = 'site=~"$site", building=~"$building"'
ONLINE_WINDOW = "5m"
"""A device counts as online when it sent telemetry within this window."""
WORK_ORDERS_OPEN = "gatehouse_work_orders_open"
"""Gauge the cloud exports on ``/metrics``: open orders by ``site`` and ``priority``."""

Json = dict[str, Any]


@dataclass
class Target:
    """One query of a panel; ``instant`` for a single value now, else a range query."""

    expr: str
    legend: str = ""
    instant: bool = False

    def to_json(self, ref: str, table: bool = False) -> Json:
        return {
            "refId": ref,
            "format": "table" if table else "time_series",
            "datasource": DATASOURCE,
            "expr": self.expr,
            "legendFormat": self.legend or "__auto",
            "instant": self.instant,
            "range": not self.instant,
            "editorMode": "code",
        }


@dataclass
class Panel:
    """A panel; ``thresholds`` are (value, color) steps above the base color."""

    title: str
    kind: str
    targets: list[Target]
    width: int = 12
    height: int = 8
    unit: str = "short"
    description: str = ""
    thresholds: list[tuple[float, str]] = field(default_factory=list)
    base_color: str = "green"
    threshold_lines: bool = False
    options: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    decimals: int | None = None

    def to_json(self, panel_id: int, x: int, y: int) -> Json:
        defaults: Json = {
            "unit": self.unit,
            "color": {
                "mode": "thresholds" if self.kind in ("stat", "bargauge") else "palette-classic"
            },
            "thresholds": {
                "mode": "absolute",
                "steps": [{"color": self.base_color, "value": None}]
                + [{"color": c, "value": v} for v, c in sorted(self.thresholds)],
            },
        }
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 0,
                "showPoints": "never",
                "spanNulls": False,
                "thresholdsStyle": {"mode": "line+area" if self.threshold_lines else "off"},
            }
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "targets": [
                t.to_json(chr(ord("A") + i), table=self.kind == "table")
                for i, t in enumerate(self.targets)
            ],
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options or _default_options(self.kind),
        }


def _default_options(kind: str) -> Json:
    if kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": "auto",
        }
    if kind == "bargauge":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        }
    if kind == "state-timeline":
        return {
            "mergeValues": True,
            "showValue": "never",
            "rowHeight": 0.8,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        }
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    raise ValueError(f"no default options for panel type {kind!r}")


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: Sequence[str] = ("site",)
    time_from: str = "now-6h"
    annotations: list[Json] = field(default_factory=list)

    def to_json(self) -> Json:
        panels = []
        x = y = row_height = 0
        for i, panel in enumerate(self.panels, start=1):
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel.to_json(i, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["gatehouse"],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": self.time_from, "to": "now"},
            "templating": {"list": [_variable(v) for v in self.variables]},
            "annotations": {"list": [_builtin_annotation(), *self.annotations]},
            "links": [
                {
                    "type": "dashboards",
                    "tags": ["gatehouse"],
                    "asDropdown": True,
                    "title": "Gatehouse",
                    "includeVars": True,
                    "keepTime": True,
                }
            ],
            "panels": panels,
        }


VARIABLE_QUERIES = {
    "site": "label_values(site)",
    "building": 'label_values({__name__=~"smart_meter_power_kw|elevator_moving|'
    'water_pump_current_a", site=~"$site"}, building)',
}
"""Template variables: name -> label_values() query (run by the tests too)."""


def _variable(name: str) -> Json:
    query = VARIABLE_QUERIES[name]
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def _builtin_annotation() -> Json:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def event_annotation(name: str, expr: str, color: str, text: str) -> Json:
    """A Prometheus annotation: a mark wherever ``expr`` has a sample."""
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": color,
        "expr": expr,
        "step": "60s",
        "titleFormat": name,
        "textFormat": text,
        "tagKeys": "building,device,type",
        "useValueForTime": False,
    }


def _limits(spec_limits: Iterable[tuple[float | None, str]]) -> list[tuple[float, str]]:
    return [(v, c) for v, c in spec_limits if v is not None]


def field_limits(profile: DeviceProfile, name: str) -> list[tuple[float, str]]:
    """Threshold steps from a profile field: warn bounds orange, the engineering limit red."""
    spec = profile.fields[name]
    return _limits([(spec.warn_high, "orange"), (spec.limit, "red")])


def events_today(kind: str | None, title: str = "Events in range", sel: str = SITE) -> Panel:
    where = f'{sel}, state="raised"' + (f', kind="{kind}"' if kind else "")
    return Panel(
        title,
        "table",
        [
            Target(
                f"sort_desc(sum by (device, type, severity) "
                f"(count_over_time(edge_events_count{{{where}}}[$__range])))",
                "{{device}} {{type}}",
                instant=True,
            )
        ],
        options={
            "showHeader": True,
            "cellHeight": "sm",
            "sortBy": [{"displayName": "Value", "desc": True}],
        },
        overrides=[],
        description="Events the edge raised in the dashboard's time range, by device and type.",
    )


def online_selector(profiles: dict[str, DeviceProfile]) -> str:
    """A selector matching one always-sent field of every kind (the first required one)."""
    names = sorted(f"{kind}_{p.required[0]}" for kind, p in profiles.items() if p.required)
    return '{__name__=~"' + "|".join(names) + '", ' + SITE + "}"


def estate_overview(profiles: dict[str, DeviceProfile]) -> Dashboard:
    online = online_selector(profiles)
    per_kind = [
        Target(
            f"count(last_over_time({kind}_{p.required[0]}{{{SITE}}}[{ONLINE_WINDOW}]))",
            kind,
            instant=True,
        )
        for kind, p in sorted(profiles.items())
        if p.required
    ]
    return Dashboard(
        uid="gatehouse-estate",
        title="Gatehouse / Estate overview",
        description="Devices online, open work orders by priority, alarms today.",
        time_from="now/d",
        panels=[
            Panel(
                "Devices online",
                "stat",
                [
                    Target(
                        f"count(count by (site, device) "
                        f"(last_over_time({online}[{ONLINE_WINDOW}])))",
                        "online",
                        instant=True,
                    )
                ],
                width=6,
                height=5,
                description=f"Devices that sent telemetry in the last {ONLINE_WINDOW}.",
            ),
            Panel(
                "Devices silent",
                "stat",
                [
                    Target(
                        f"count((count by (site, device) (last_over_time({online}[$__range]))) "
                        f"unless (count by (site, device) "
                        f"(last_over_time({online}[{ONLINE_WINDOW}])))) or vector(0)",
                        "silent",
                        instant=True,
                    )
                ],
                width=6,
                height=5,
                thresholds=[(1, "red")],
                description=(
                    f"Devices seen in the time range but silent for {ONLINE_WINDOW} or more."
                ),
            ),
            Panel(
                "Alarms today",
                "stat",
                [
                    Target(
                        f'sum(count_over_time(edge_events_count{{{SITE}, severity="critical", '
                        f'state="raised"}}[$__range])) or vector(0)',
                        "critical events",
                        instant=True,
                    )
                ],
                width=6,
                height=5,
                thresholds=[(1, "red")],
                description="Critical events raised since midnight (entrapment, forced door, "
                "thrown object, dry running...).",
            ),
            Panel(
                "Open work orders",
                "stat",
                [
                    Target(
                        f"sum({WORK_ORDERS_OPEN}{{{SITE}}}) or vector(0)",
                        "open",
                        instant=True,
                    )
                ],
                width=6,
                height=5,
                thresholds=[(20, "orange")],
                description="From the cloud's /metrics, scraped by VictoriaMetrics.",
            ),
            Panel(
                "Open work orders by priority",
                "bargauge",
                [
                    Target(
                        f"sum by (priority) ({WORK_ORDERS_OPEN}{{{SITE}}})",
                        "{{priority}}",
                        instant=True,
                    )
                ],
                width=8,
                description="P1 emergency, P2 urgent, P3 repair, P4 routine.",
            ),
            Panel(
                "Devices online by kind",
                "bargauge",
                per_kind,
                width=8,
                base_color="blue",
            ),
            events_today(None, "Events today"),
            Panel(
                "Raised events per hour by severity",
                "timeseries",
                [
                    Target(
                        f"sum by (severity) (count_over_time(edge_events_count{{{SITE}, "
                        f'state="raised"}}[1h]))',
                        "{{severity}}",
                    )
                ],
                width=12,
            ),
            Panel(
                "Open work orders over time",
                "timeseries",
                [Target(f"sum by (priority) ({WORK_ORDERS_OPEN}{{{SITE}}})", "{{priority}}")],
                width=12,
            ),
        ],
    )


def elevator_board(profiles: dict[str, DeviceProfile]) -> Dashboard:
    p = profiles["elevator"]
    sel = SITE_BUILDING
    leveling = p.fields["leveling_error_mm"]
    assert leveling.warn_high is not None
    return Dashboard(
        uid="gatehouse-elevators",
        title="Gatehouse / Elevator fleet",
        description="Every elevator: position, trips, doors, ride quality, drive.",
        variables=("site", "building"),
        panels=[
            Panel(
                "Current floor",
                "stat",
                [
                    Target(
                        f"last_over_time(elevator_floor{{{sel}}}[{ONLINE_WINDOW}])",
                        "{{device}}",
                        instant=True,
                    )
                ],
                width=12,
                height=5,
                base_color="blue",
                decimals=0,
            ),
            Panel(
                "Trips in the last hour",
                "bargauge",
                [
                    Target(
                        f"sum by (device) (sum_over_time(elevator_trips{{{sel}}}[1h]))",
                        "{{device}}",
                        instant=True,
                    )
                ],
                width=12,
                height=5,
                base_color="blue",
            ),
            Panel(
                "Moving",
                "state-timeline",
                [Target(f"max by (device) (elevator_moving{{{sel}}})", "{{device}}")],
                width=24,
                height=6,
                thresholds=[(1, "blue")],
                base_color="transparent",
            ),
            Panel(
                "Door cycle time",
                "timeseries",
                [Target(f"elevator_door_cycle_s{{{sel}}}", "{{device}}")],
                unit="s",
                thresholds=field_limits(p, "door_cycle_s"),
                threshold_lines=True,
                description="Slow door cycles point to door-operator wear (forecast below).",
            ),
            Panel(
                "Door reversals and close failures per hour",
                "timeseries",
                [
                    Target(
                        f"sum by (device) (sum_over_time(elevator_door_reversals{{{sel}}}[1h]))",
                        "{{device}} reversals",
                    ),
                    Target(
                        f"sum by (device) "
                        f"(sum_over_time(elevator_door_close_failures{{{sel}}}[1h]))",
                        "{{device}} close failures",
                    ),
                ],
            ),
            Panel(
                "Ride vibration",
                "timeseries",
                [Target(f"elevator_vibration_rms{{{sel}}}", "{{device}}")],
                unit="m/s²",
                thresholds=field_limits(p, "vibration_rms"),
                threshold_lines=True,
            ),
            Panel(
                "Motor current",
                "timeseries",
                [Target(f"elevator_motor_current_a{{{sel}}}", "{{device}}")],
                unit="amp",
                thresholds=field_limits(p, "motor_current_a"),
                threshold_lines=True,
            ),
            Panel(
                "Levelling error (absolute)",
                "timeseries",
                [Target(f"abs(elevator_leveling_error_mm{{{sel}}})", "{{device}}")],
                unit="lengthmm",
                thresholds=[(leveling.warn_high, "orange")],
                threshold_lines=True,
                description="Distance between car floor and landing when stopped (trip hazard).",
            ),
            Panel(
                "Car load",
                "timeseries",
                [Target(f"elevator_load_kg{{{sel}}}", "{{device}}")],
                unit="masskg",
            ),
            Panel(
                "Door wear: hours until the cycle-time limit",
                "bargauge",
                [
                    Target(
                        f"min by (device) (last_over_time(edge_events_forecast_hours{{{sel}, "
                        f'type="elevator.door_wear", state="raised"}}[$__range]))',
                        "{{device}}",
                        instant=True,
                    )
                ],
                unit="h",
                thresholds=[(72, "orange"), (168, "green")],
                base_color="red",
            ),
            events_today("elevator", "Elevator events in range", sel),
        ],
    )


def pump_board(profiles: dict[str, DeviceProfile]) -> Dashboard:
    p = profiles["water_pump"]
    sel = SITE_BUILDING
    return Dashboard(
        uid="gatehouse-pumps",
        title="Gatehouse / Pumps",
        description="Bearing vibration against its limits, forecast hours left, hydraulics.",
        variables=("site", "building"),
        panels=[
            Panel(
                "Bearing vibration, drive end",
                "timeseries",
                [Target(f"water_pump_accel1_rms{{{sel}}}", "{{device}}")],
                unit="g",
                thresholds=field_limits(p, "accel1_rms"),
                threshold_lines=True,
                description="Red: the engineering limit the trend forecast aims at; "
                "orange: the warning band.",
            ),
            Panel(
                "Bearing vibration, motor end",
                "timeseries",
                [Target(f"water_pump_accel2_rms{{{sel}}}", "{{device}}")],
                unit="g",
                thresholds=field_limits(p, "accel2_rms"),
                threshold_lines=True,
            ),
            Panel(
                "Forecast: hours until the vibration limit",
                "bargauge",
                [
                    Target(
                        f"min by (device) (last_over_time(edge_events_forecast_hours{{{sel}, "
                        f'kind="water_pump", state="raised"}}[$__range]))',
                        "{{device}}",
                        instant=True,
                    )
                ],
                unit="h",
                thresholds=[(24, "orange"), (168, "green")],
                base_color="red",
                description="The latest forecast of the bearing-wear trend detector.",
            ),
            Panel(
                "Forecast hours over time",
                "timeseries",
                [
                    Target(
                        f"min by (device) (last_over_time(edge_events_forecast_hours{{{sel}, "
                        f'kind="water_pump", state="raised"}}[$__range]))',
                        "{{device}}",
                    )
                ],
                unit="h",
            ),
            Panel(
                "Outlet pressure",
                "timeseries",
                [Target(f"water_pump_pressure_bar{{{sel}}}", "{{device}}")],
                unit="pressurebar",
                thresholds=field_limits(p, "pressure_bar"),
                threshold_lines=True,
            ),
            Panel(
                "Motor current",
                "timeseries",
                [Target(f"water_pump_current_a{{{sel}}}", "{{device}}")],
                unit="amp",
                thresholds=field_limits(p, "current_a"),
                threshold_lines=True,
            ),
            Panel(
                "Motor and water temperature",
                "timeseries",
                [
                    Target(f"water_pump_temperature_c{{{sel}}}", "{{device}} motor"),
                    Target(f"water_pump_thermocouple_c{{{sel}}}", "{{device}} water"),
                ],
                unit="celsius",
            ),
            Panel(
                "Flow",
                "timeseries",
                [Target(f"water_pump_flow_lpm{{{sel}}}", "{{device}}")],
                unit="flowlpm",
            ),
            events_today("water_pump", "Pump events in range", sel),
        ],
    )


def energy_board(profiles: dict[str, DeviceProfile]) -> Dashboard:
    p = profiles["smart_meter"]
    sel = SITE_BUILDING
    power = f"smart_meter_power_kw{{{sel}}}"
    voltage = p.fields["voltage_l1_v"]
    return Dashboard(
        uid="gatehouse-energy",
        title="Gatehouse / Energy",
        description="Consumption per building against last week's, spikes annotated.",
        variables=("site", "building"),
        annotations=[
            event_annotation(
                "Energy spike",
                f"sum by (building, device, type) (edge_events_count{{{sel}, "
                f'type="meter.energy_spike", state="raised"}})',
                "red",
                "{{device}} in {{building}}",
            )
        ],
        panels=[
            Panel(
                "Power per building against baseline",
                "timeseries",
                [
                    Target(f"sum by (building) ({power})", "{{building}}"),
                    Target(
                        f"sum by (building) ({power} offset 7d)",
                        "{{building}} baseline",
                    ),
                ],
                width=24,
                unit="kwatt",
                description="Baseline: the same building at the same time one week earlier.",
                overrides=[
                    {
                        "matcher": {"id": "byRegexp", "options": ".* baseline"},
                        "properties": [
                            {
                                "id": "custom.lineStyle",
                                "value": {"fill": "dash", "dash": [10, 10]},
                            }
                        ],
                    }
                ],
            ),
            Panel(
                "Energy in range per building",
                "bargauge",
                [
                    Target(
                        f"sum by (building) (increase(smart_meter_energy_kwh{{{sel}}}[$__range]))",
                        "{{building}}",
                        instant=True,
                    ),
                    Target(
                        f"sum by (building) "
                        f"(increase(smart_meter_energy_kwh{{{sel}}}[$__range] offset 7d))",
                        "{{building}} last week",
                        instant=True,
                    ),
                ],
                unit="kwatth",
                base_color="blue",
            ),
            Panel(
                "Now against baseline",
                "stat",
                [
                    Target(
                        f"sum by (building) ({power}) / sum by (building) ({power} offset 7d)",
                        "{{building}}",
                        instant=True,
                    )
                ],
                unit="percentunit",
                thresholds=[(1.25, "orange"), (2.0, "red")],
            ),
            Panel(
                "Top meters by power",
                "timeseries",
                [Target(f"topk(10, {power})", "{{device}}")],
                unit="kwatt",
            ),
            Panel(
                "Supply voltage",
                "timeseries",
                [
                    Target(f"smart_meter_voltage_{ph}_v{{{sel}}}", f"{{{{device}}}} {ph.upper()}")
                    for ph in ("l1", "l2", "l3")
                ],
                unit="volt",
                thresholds=_limits([(voltage.warn_low, "green"), (voltage.warn_high, "red")]),
                base_color="red",
                threshold_lines=True,
            ),
            events_today("smart_meter", "Meter events in range", sel),
        ],
    )


def gate_board(profiles: dict[str, DeviceProfile]) -> Dashboard:
    p = profiles["access_gate"]
    held_open = next(
        float(d.params["held_open_s"]) for d in p.detectors if "held_open_s" in d.params
    )
    sel = SITE
    return Dashboard(
        uid="gatehouse-gates",
        title="Gatehouse / Access gates",
        description="Passages, recognitions, doors held open, tailgating, security events.",
        panels=[
            Panel(
                "Passages per hour",
                "timeseries",
                [
                    Target(
                        f"sum by (device) (sum_over_time(access_gate_passages{{{sel}}}[1h]))",
                        "{{device}}",
                    )
                ],
            ),
            Panel(
                "Granted and failed recognitions per hour",
                "timeseries",
                [
                    Target(f"sum(sum_over_time(access_gate_grants{{{sel}}}[1h]))", "granted"),
                    Target(f"sum(sum_over_time(access_gate_denials{{{sel}}}[1h]))", "failed"),
                ],
            ),
            Panel(
                "Failed recognition ratio (15 min)",
                "timeseries",
                [
                    Target(
                        f"sum by (device) (sum_over_time(access_gate_denials{{{sel}}}[15m])) / "
                        f"clamp_min(sum by (device) (sum_over_time(access_gate_denials{{{sel}}}"
                        f"[15m]) + sum_over_time(access_gate_grants{{{sel}}}[15m])), 1)",
                        "{{device}}",
                    )
                ],
                unit="percentunit",
                thresholds=[(0.3, "orange"), (0.6, "red")],
                threshold_lines=True,
            ),
            Panel(
                "Passages beyond grants (15 min)",
                "timeseries",
                [
                    Target(
                        f"sum by (device) (sum_over_time(access_gate_passages{{{sel}}}[15m]) - "
                        f"sum_over_time(access_gate_grants{{{sel}}}[15m]))",
                        "{{device}}",
                    )
                ],
                description="More people through than recognised: tailgating.",
                thresholds=[(2, "orange")],
                threshold_lines=True,
            ),
            Panel(
                "Door open",
                "state-timeline",
                [Target(f"max by (device) (access_gate_door_open{{{sel}}})", "{{device}}")],
                width=24,
                height=5,
                thresholds=[(1, "orange")],
                base_color="transparent",
            ),
            Panel(
                "Door open for",
                "timeseries",
                [Target(f"access_gate_door_open_s{{{sel}}}", "{{device}}")],
                unit="s",
                thresholds=[(held_open, "red")],
                threshold_lines=True,
                description="The held-open alarm fires at the red line (gate_rules.held_open_s).",
            ),
            Panel(
                "Tamper",
                "stat",
                [
                    Target(
                        f"max by (device) (last_over_time(access_gate_tamper{{{sel}}}[$__range]))",
                        "{{device}}",
                        instant=True,
                    )
                ],
                width=6,
                thresholds=[(1, "red")],
            ),
            Panel(
                "Security events in range",
                "table",
                events_today("access_gate").targets,
                width=18,
            ),
        ],
    )


def build_all() -> dict[str, Json]:
    """Every dashboard as JSON, by file name."""
    profiles = load_profiles()
    boards = [
        estate_overview(profiles),
        elevator_board(profiles),
        pump_board(profiles),
        energy_board(profiles),
        gate_board(profiles),
    ]
    return {f"{b.uid.removeprefix('gatehouse-')}.json": b.to_json() for b in boards}


def render(board: Json) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the JSON files are stale")
    args = parser.parse_args(argv)
    stale = []
    JSON_DIR.mkdir(exist_ok=True)
    for name, board in build_all().items():
        path = JSON_DIR / name
        text = render(board)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards (run python dashboards/build_dashboards.py): {stale}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
