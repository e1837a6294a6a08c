"""The site configuration: one YAML file describes a site for the edge and the simulator.

A site lists its devices either explicitly (``devices``) or as an estate layout
(``estate``: buildings, floors, units and counts per kind) that expands deterministically
into devices, so the simulator and the edge agent always agree on the device list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device_profiles.durations import Duration
from device_profiles.schema import KINDS
from device_profiles.yamlfile import load_yaml_model


class SiteConfigError(ValueError):
    """The site file cannot be read or is invalid; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceConfig(_Strict):
    """One device of the site."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    kind: str
    building: str = "B1"
    unit: str | None = None
    floor: int | None = None
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    install_date: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    """Per-device overrides (for a camera: source URL, calibration)."""

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind {value!r}; expected one of {', '.join(KINDS)}")
        return value


class EstateLayout(_Strict):
    """A generated estate: ``buildings`` towers of ``floors`` floors, devices per kind."""

    buildings: int = Field(default=2, ge=1, le=500)
    floors: int = Field(default=18, ge=1, le=200)
    units_per_floor: int = Field(default=4, ge=1, le=50)
    elevators_per_building: int = Field(default=2, ge=0, le=20)
    pumps_per_building: int = Field(default=2, ge=0, le=20)
    meters_per_building: int = Field(default=3, ge=0, le=1000)
    gates: int = Field(default=2, ge=0, le=100)
    cameras_per_building: int = Field(default=1, ge=0, le=20)
    device_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Params for generated devices, by id (``b1-pump-1: {duty: continuous}``); merged over
    the layout's own params. An id the layout does not generate is an error."""

    @model_validator(mode="after")
    def _params_name_devices(self) -> EstateLayout:
        if self.device_params:
            known = {d.id for d in self._generate()}
            unknown = sorted(set(self.device_params) - known)
            if unknown:
                raise ValueError(
                    f"device_params names devices the layout does not generate: "
                    f"{', '.join(unknown[:10])} (ids look like b1-pump-1, gate-2)"
                )
        return self

    def devices(self) -> list[DeviceConfig]:
        """Expand the layout into devices with stable ids (``b1-elev-1``, ``b2-pump-2``...)."""
        out = self._generate()
        if not self.device_params:
            return out
        return [
            d.model_copy(update={"params": {**d.params, **self.device_params[d.id]}})
            if d.id in self.device_params
            else d
            for d in out
        ]

    def _generate(self) -> list[DeviceConfig]:
        out: list[DeviceConfig] = []
        for b in range(1, self.buildings + 1):
            bname = f"B{b}"
            for i in range(1, self.elevators_per_building + 1):
                out.append(DeviceConfig(id=f"b{b}-elev-{i}", kind="elevator", building=bname))
            for i in range(1, self.pumps_per_building + 1):
                out.append(
                    DeviceConfig(id=f"b{b}-pump-{i}", kind="water_pump", building=bname, floor=-1)
                )
            for i in range(1, self.meters_per_building + 1):
                floor = 1 + (i - 1) % self.floors
                out.append(
                    DeviceConfig(
                        id=f"b{b}-meter-{i}",
                        kind="smart_meter",
                        building=bname,
                        floor=floor,
                        params={"common_area": i == 1},
                    )
                )
            for i in range(1, self.cameras_per_building + 1):
                out.append(DeviceConfig(id=f"b{b}-cam-{i}", kind="camera", building=bname))
        for i in range(1, self.gates + 1):
            out.append(DeviceConfig(id=f"gate-{i}", kind="access_gate", building="estate", floor=0))
        return out


class MqttConfig(_Strict):
    url: str = "mqtt://127.0.0.1:1883"
    """``mqtt://host:port`` or ``mqtts://host:port`` (TLS)."""
    client_id: str | None = None
    """Fixed client id for a persistent session; default ``gatehouse-edge-{gateway_id}``."""
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    session_expiry: Duration = 86400.0
    qos: Literal[0, 1] = 1
    protocol: Literal["v5", "v311"] = "v5"
    """MQTT 5 by default; ``v311`` (persistent session via clean_session=False) for brokers
    without MQTT 5, such as the demo's embedded broker."""
    shared_group: str | None = None
    """Subscribe through ``$share/{group}/...`` so several agents split the load."""


class CloudConfig(_Strict):
    url: str = "http://127.0.0.1:8000"
    token: str | None = None
    token_file: str | None = None
    """The site's gateway token, read from this file (preferred) or ``token`` or the
    environment variable ``GATEHOUSE_GATEWAY_TOKEN``."""
    ca_file: str | None = None
    batch_size: int = Field(default=200, ge=1, le=5000)
    retry_initial: Duration = 0.5
    retry_max: Duration = 30.0
    timeout: Duration = 10.0

    def resolve_token(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        return self.token or os.environ.get("GATEHOUSE_GATEWAY_TOKEN")


class TsdbConfig(_Strict):
    """Telemetry database with InfluxDB's write API (InfluxDB 2/3 or VictoriaMetrics)."""

    url: str
    client: Literal["http", "influxdb-client"] = "http"
    """How the line protocol is posted: the agent's own HTTP client (default, lean) or
    influxdb-client (the same requests; about 32 MB more resident memory)."""
    org: str = "gatehouse"
    bucket: str = "telemetry"
    token: str | None = None
    token_file: str | None = None
    batch_size: int = Field(default=5000, ge=1)
    flush_interval: Duration = 1.0


class SiteConfig(_Strict):
    """The whole site file."""

    site_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    gateway_id: str = Field(default="gw-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str = ""
    data_dir: str = "./var/edge"
    """Where the outbox, dead letters and evidence images live (must be durable storage)."""
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    tsdb: TsdbConfig | None = None
    estate: EstateLayout | None = None
    devices: list[DeviceConfig] = Field(default_factory=list)
    profiles_dir: str | None = None
    """Folder of custom profiles; default: the profiles shipped with gatehouse."""
    http_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the edge's ``/healthz`` and ``/metrics``; ``None`` disables them."""

    @model_validator(mode="after")
    def _unique_ids(self) -> SiteConfig:
        ids = [d.id for d in self.all_devices()]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate device ids: {', '.join(dupes[:10])}")
        return self

    def all_devices(self) -> list[DeviceConfig]:
        """Explicit devices plus those of the estate layout."""
        generated = self.estate.devices() if self.estate else []
        return generated + list(self.devices)


def load_site(path: Path | str) -> SiteConfig:
    """Read a site file; raise :class:`SiteConfigError` naming the file and the field."""
    return load_yaml_model(Path(path), SiteConfig, "site config", SiteConfigError)


def dump_site(site: SiteConfig, path: Path | str) -> None:
    """Write ``site`` as YAML (used by the demo and the tests to hand configs to processes)."""
    data = site.model_dump(mode="json", exclude_none=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
