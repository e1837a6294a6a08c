"""A live cloud with the dashboard on a free port, and the system's headless Chromium.

The cloud runs under uvicorn in a thread on a temporary SQLite database with the wall
clock (the browser ticks SLA clocks against real time), with site ``s1`` (a small estate),
site ``s2`` (one elevator, another operator's), users of every role and gateway tokens.
Chromium is the Debian package driven by Playwright; Playwright's own browser download
is never used.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cloud.app import create_app
from cloud.bootstrap import create_user, issue_gateway_token, provision_site
from cloud.dashboard import install
from cloud.settings import Settings
from device_profiles.messages import Event, make_event_id
from device_profiles.site import DeviceConfig, EstateLayout
from tests.servers import ServerUnavailable, ensure_debian_package, free_port

WALL = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}
LIVE_WITHIN_MS = 5000
"""How soon a change must show on an open page, without a reload."""

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "dashboard-pass-1"
USERS: dict[str, tuple[str, list[str]]] = {
    "dana": ("dispatcher", ["s1"]),
    "tom": ("technician", ["s1"]),
    "vera": ("viewer", ["s1"]),
    "otto": ("admin", ["s2"]),
}
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


@dataclass
class LiveCloud:
    """The running cloud: its URL and helpers that act as a gateway of ``s1`` or ``s2``."""

    base_url: str
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    def gateway(self, site_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[site_id]}"}

    def send(self, site_id: str, events: Sequence[Event]) -> dict[str, Any]:
        reply = httpx.post(
            f"{self.base_url}/api/v1/events", headers=self.gateway(site_id), timeout=10,
            json={"events": [e.model_dump(mode="json") for e in events]},
        )
        reply.raise_for_status()
        body: dict[str, Any] = reply.json()
        return body

    def summaries(self, site_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        reply = httpx.post(
            f"{self.base_url}/api/v1/telemetry", headers=self.gateway(site_id), timeout=30,
            json={"site_id": site_id, "items": items},
        )
        reply.raise_for_status()
        body: dict[str, Any] = reply.json()
        return body

    def upload(self, site_id: str, name: str, jpeg: bytes) -> None:
        reply = httpx.post(
            f"{self.base_url}/api/v1/evidence", params={"name": name}, content=jpeg,
            headers={**self.gateway(site_id), "Content-Type": "image/jpeg"}, timeout=10,
        )
        reply.raise_for_status()

    def login(self, username: str) -> dict[str, str]:
        reply = httpx.post(f"{self.base_url}/api/v1/auth/login",
                           json={"username": username, "password": PASSWORD}, timeout=10)
        reply.raise_for_status()
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    def get(self, path: str, username: str, **params: Any) -> Any:
        reply = httpx.get(f"{self.base_url}{path}", headers=self.login(username),
                          params=params, timeout=10)
        reply.raise_for_status()
        return reply.json()


def make_event(
    site_id: str, device_id: str, kind: str, type_: str, severity: str = "warning",
    ts: float | None = None, evidence: dict[str, Any] | None = None,
) -> Event:
    when = time.time() if ts is None else ts
    return Event(
        event_id=make_event_id(site_id, device_id, type_, when, "raised"),
        site_id=site_id, gateway_id="gw-test", device_id=device_id, kind=kind, type=type_,
        severity=severity, state="raised", ts=when,
        evidence=evidence or {"value": 1.0},
    )


@contextlib.contextmanager
def live_cloud(workdir: Path) -> Iterator[LiveCloud]:
    """The cloud with the dashboard on a free port, provisioned; stopped on exit."""
    import uvicorn

    settings = Settings(database_url=f"sqlite:///{workdir / 'cloud.db'}",
                        secret_key=secrets.token_urlsafe(32), run_engine=False)
    app = create_app(settings)
    install(app)
    layout = EstateLayout(buildings=2, floors=6, elevators_per_building=2, pumps_per_building=1,
                          meters_per_building=2, gates=1, cameras_per_building=1)
    provision_site(settings, "s1", "Harbour View", layout.devices())
    provision_site(settings, "s2", "Other Estate",
                   [DeviceConfig(id="s2-elev-9", kind="elevator", building="T1")])
    for username, (role, sites) in USERS.items():
        create_user(settings, username, PASSWORD, role, sites)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="dashboard-cloud", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise ServerUnavailable(f"the cloud did not start on port {port}")
        time.sleep(0.05)
    cloud = LiveCloud(base_url=f"http://127.0.0.1:{port}", settings=settings,
                      tokens={s: issue_gateway_token(settings, s) for s in ("s1", "s2")})
    try:
        yield cloud
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright ``Browser`` on the system Chromium (installed from Debian if missing)."""
    from playwright.sync_api import sync_playwright

    path = ensure_debian_package("chromium", "chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
