"""``gatehouse cloud`` provisioning commands, in-process, on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud.app import create_app
from gatehouse.cli import main
from tests.servers_cloud import SECRET, event, settings_for


def test_provisioning_commands_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY", SECRET)
    url = f"sqlite:///{tmp_path}/cli.db"
    site = tmp_path / "site.yaml"
    site.write_text("site_id: east\nname: East Estate\nestate: {buildings: 1, floors: 3}\n")
    password = tmp_path / "pw"
    password.write_text("a-long-password\n")
    base = ["cloud", "--database-url", url]
    assert main(["cloud", "migrate", "--database-url", url]) == 0
    assert main([*base, "create-site", "east", "--site-config", str(site)]) == 0
    assert "devices registered" in capsys.readouterr().out
    assert main([*base, "gateway-token", "east"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("ghg_")
    assert main([*base, "create-user", "ed", "--role", "dispatcher", "--site", "east",
                 "--password-file", str(password)]) == 0
    app = create_app(settings_for(url))
    with TestClient(app) as client:
        gw = {"Authorization": f"Bearer {token}"}
        ev = event(site_id="east", device_id="b1-elev-1")
        body = {"events": [ev.model_dump(mode="json")]}
        assert client.post("/api/v1/events", json=body, headers=gw).json()["accepted"]
        login = client.post("/api/v1/auth/login",
                            data={"username": "ed", "password": "a-long-password"})
        user = {"Authorization": f"Bearer {login.json()['access_token']}"}
        devices = client.get("/api/v1/devices", headers=user).json()
        assert {d["device_id"] for d in devices} >= {"b1-elev-1", "b1-pump-1", "gate-1"}
        assert main([*base, "revoke-token", "east"]) == 0
        assert "1 token(s) revoked" in capsys.readouterr().out
        assert client.post("/api/v1/events", json=body, headers=gw).status_code == 401


def test_bad_input_is_a_clear_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.delenv("GATEHOUSE_SECRET_KEY", raising=False)
    assert main(["cloud", "--database-url", url, "migrate"]) == 2
    assert "secret_key" in capsys.readouterr().err
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY", SECRET)
    monkeypatch.setenv("GATEHOUSE_USER_PASSWORD", "short")
    assert main(["cloud", "--database-url", url, "create-user", "x", "--role", "viewer"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert main(["cloud", "--database-url", url, "create-site", "east", "--site-config",
                 str(tmp_path / "missing.yaml")]) == 2
    assert main(["cloud", "--database-url", url, "serve", "--workers", "2"]) == 2
