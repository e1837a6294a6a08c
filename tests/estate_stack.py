"""A whole site stack for integration tests: cloud (uvicorn thread), edge agent, simulator.

The broker is a real Mosquitto from the session fixture; the cloud runs on a temporary
SQLite database (or the given URL); every object is built through the public APIs the
demo uses, so the tests exercise exactly what a user runs.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cloud.app import create_app
from cloud.bootstrap import create_user, issue_gateway_token, provision_site
from cloud.settings import Settings
from device_profiles.site import CloudConfig, DeviceConfig, MqttConfig, SiteConfig
from edge.runner import Agent, AgentOptions
from gatehouse.demo import CloudServer
from tests.servers import free_port


@dataclass
class Stack:
    site: SiteConfig
    settings: Settings
    base_url: str
    token: str
    api: httpx.Client
    agent: Agent

    def orders(self, **params: Any) -> list[dict[str, Any]]:
        resp = self.api.get("/api/v1/work-orders", params={"site_id": self.site.site_id, **params})
        resp.raise_for_status()
        body = resp.json()
        items = body.get("items", body) if isinstance(body, dict) else body
        return [o for o in items if isinstance(o, dict)]


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def cloud_server(tmp: Path, database_url: str | None = None) -> Iterator[tuple[Settings, str]]:
    settings = Settings(
        database_url=database_url or f"sqlite:///{tmp / 'cloud.db'}",
        secret_key=secrets.token_urlsafe(32),
        dev_mode=True,
    )
    server = CloudServer(create_app(settings), free_port())
    server.start()
    try:
        yield settings, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@contextmanager
def site_stack(
    tmp: Path,
    broker_url: str,
    site_id: str,
    devices: list[DeviceConfig],
    *,
    options: AgentOptions | None = None,
) -> Iterator[Stack]:
    """Cloud + provisioned site + admin login + a started edge agent for ``devices``."""
    with cloud_server(tmp) as (settings, base):
        site = SiteConfig(
            site_id=site_id,
            gateway_id="gw-test",
            data_dir=str(tmp / "edge"),
            mqtt=MqttConfig(url=broker_url, client_id=f"edge-{site_id}"),
            cloud=CloudConfig(url=base, retry_initial=0.1, retry_max=1.0),
            devices=devices,
        )
        provision_site(settings, site_id, site_id, devices)
        token = issue_gateway_token(settings, site_id)
        site.cloud.token = token
        create_user(settings, "admin", "admin-pass-123", "admin", [site_id])
        api = httpx.Client(base_url=base, timeout=10)
        login = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "admin-pass-123"}
        )
        login.raise_for_status()
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        agent = Agent(site, options=options)
        agent.start()
        try:
            yield Stack(site, settings, base, token, api, agent)
        finally:
            agent.stop()
            api.close()
