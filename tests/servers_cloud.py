"""Helpers for the cloud tests: an in-process app on SQLite or PostgreSQL with a manual clock,
and a real ``gatehouse cloud serve`` in a subprocess for the multi-worker tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from cloud.app import create_app
from cloud.bootstrap import create_user, issue_gateway_token, provision_site
from cloud.clock import ManualClock
from cloud.settings import Settings
from device_profiles.messages import Event, make_event_id
from device_profiles.site import DeviceConfig
from tests.servers import free_port, wait_for_port

SECRET = "test-secret-0123456789abcdef"
T0 = 1_750_000_000.0


@dataclass
class CloudHarness:
    """An app with a manual clock, a provisioned site ``s1`` (and ``s2``), helpers for callers."""

    settings: Settings
    clock: ManualClock
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def gateway(self, site_id: str) -> dict[str, str]:
        if site_id not in self.tokens:
            self.tokens[site_id] = issue_gateway_token(self.settings, site_id)
        return {"Authorization": f"Bearer {self.tokens[site_id]}"}

    def user(
        self, username: str, role: str, sites: list[str], team: str | None = None,
        on_shift: bool = False, password: str = "password-123",
    ) -> dict[str, str]:
        create_user(self.settings, username, password, role, sites, team=team, on_shift=on_shift)
        reply = self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert reply.status_code == 200, reply.text
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    def send(self, site_id: str, events: list[Event]) -> httpx.Response:
        return self.client.post(
            "/api/v1/events", headers=self.gateway(site_id),
            json={"events": [e.model_dump(mode="json") for e in events]},
        )


def event(
    site_id: str = "s1", device_id: str = "b1-elev-1", kind: str = "elevator",
    type_: str = "elevator.door_fault", state: str = "raised", episode: float = T0,
    ts: float | None = None, severity: str = "warning",
) -> Event:
    return Event(
        event_id=make_event_id(site_id, device_id, type_, episode, state),  # type: ignore[arg-type]
        site_id=site_id, gateway_id="gw-1", device_id=device_id, kind=kind, type=type_,
        severity=severity, state=state, ts=ts if ts is not None else episode,  # type: ignore[arg-type]
        evidence={"value": 1.0},
    )


def settings_for(url: str, **extra: object) -> Settings:
    return Settings.model_validate(
        {"database_url": url, "secret_key": SECRET, "run_engine": False, **extra}
    )


def site_with_admin(settings: Settings) -> str:
    """Site ``s1`` (no devices) with admin ``ada`` (password ``password-123``); the site's
    gateway token."""
    provision_site(settings, "s1", "Site one", [])
    token = issue_gateway_token(settings, "s1")
    create_user(settings, "ada", "password-123", "admin", ["s1"])
    return token


@contextlib.contextmanager
def harness(url: str, **extra: object) -> Iterator[CloudHarness]:
    settings = settings_for(url, **extra)
    clock = ManualClock(T0)
    app = create_app(settings, clock=clock)
    provision_site(settings, "s1", "Site one", [
        DeviceConfig(id="b1-elev-1", kind="elevator", building="B1", vendor="Kone"),
        DeviceConfig(id="b1-pump-1", kind="water_pump", building="B1", floor=-1),
    ])
    provision_site(settings, "s2", "Site two", [
        DeviceConfig(id="b1-elev-1", kind="elevator", building="B1"),
    ])
    with TestClient(app) as client:
        yield CloudHarness(settings=settings, clock=clock, client=client)


@contextlib.contextmanager
def served(
    url: str, workers: int, workdir: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``gatehouse cloud serve`` in a subprocess (``env``: extra settings); yields its base
    URL. Several may serve one database at once: each logs to its own file in ``workdir``."""
    port = free_port()
    env = dict(os.environ, GATEHOUSE_SECRET_KEY=SECRET, GATEHOUSE_DATABASE_URL=url,
               **(env or {}))
    log = open(workdir / f"cloud-{port}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatehouse", "cloud", "serve", "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=log, stderr=log, cwd=workdir,
    )
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
