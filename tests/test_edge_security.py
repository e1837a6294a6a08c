"""The edge behind a locked-down Mosquitto: TLS with passwords or client certificates,
per-device topic limits, and refusal of anonymous or plaintext connections."""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Event
from device_profiles.site import DeviceConfig, MqttConfig
from edge.outbox import CRITICAL
from edge.runner import Agent, AgentOptions
from tests.servers import Mosquitto, free_port
from tests.servers_edge import (
    FakeCloud,
    HttpFakeCloud,
    Pki,
    Publisher,
    SourceBox,
    make_pki,
    make_site,
    pump_payload,
)

pytestmark = pytest.mark.integration
PROFILES = load_profiles()
EDGE_USER = "gatehouse-edge"
PASSWORDS = {EDGE_USER: "edge-secret-1", "pump-1": "pump-secret-1", "pump-2": "pump-secret-2"}


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


class SecureBroker:
    def __init__(self, broker: Mosquitto, pki: Pki, tls_port: int, cert_port: int,
                 plain_port: int, secrets: Path) -> None:
        self.broker, self.pki = broker, pki
        self.tls_port, self.cert_port, self.plain_port = tls_port, cert_port, plain_port
        self.secrets = secrets


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    work = tmp_path_factory.mktemp("secure-mqtt")
    pki = make_pki(work / "pki")
    pwfile = work / "passwd"
    pwfile.write_text("")
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, password], check=True)
    secrets = work / "secrets"
    secrets.mkdir()
    (secrets / "edge.pw").write_text(PASSWORDS[EDGE_USER] + "\n")
    acl = work / "acl"
    acl.write_text(f"user {EDGE_USER}\ntopic read gh/#\n\npattern write gh/+/+/%u/#\n")
    tls_port, cert_port, plain_port = free_port(), free_port(), free_port()
    tls = f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
    conf = (
        f"listener {tls_port} 127.0.0.1\n{tls}"
        f"listener {cert_port} 127.0.0.1\n{tls}require_certificate true\n"
        "use_identity_as_username true\n"
        f"listener {plain_port} 127.0.0.1\n"
        f"allow_anonymous false\npassword_file {pwfile}\nacl_file {acl}\n"
        "user root\n"  # read the secrets in this test's private (0700) folder
    )
    broker = Mosquitto(workdir=work / "broker", port=tls_port, extra_conf=conf)
    broker.start()
    try:
        yield SecureBroker(broker, pki, tls_port, cert_port, plain_port, secrets)
    finally:
        broker.stop()


def agent_for(secure: SecureBroker, tmp_path: Path, mqtt: MqttConfig) -> tuple[Agent, str]:
    site_id = f"x{uuid.uuid4().hex[:10]}"
    devices = [DeviceConfig(id="pump-1", kind="water_pump"),
               DeviceConfig(id="pump-2", kind="water_pump")]
    site = make_site(site_id, data_dir=tmp_path, devices=devices,
                     mqtt=mqtt.model_copy(update={"client_id": f"edge-{site_id}"}))
    agent = Agent(
        site, profiles=PROFILES, options=AgentOptions(reserve_bytes=0, low_water_bytes=0),
        outputs={}, http_client=FakeCloud().client(),
    )
    return agent, site_id


def test_tls_with_password_and_per_device_topic_limits(
    secure: SecureBroker, tmp_path: Path
) -> None:
    agent, site_id = agent_for(secure, tmp_path, MqttConfig(
        url=f"mqtts://127.0.0.1:{secure.tls_port}", username=EDGE_USER,
        password_file=str(secure.secrets / "edge.pw"), ca_file=str(secure.pki.ca),
    ))
    agent.start()
    device = Publisher(secure.tls_port, username="pump-1", password=PASSWORDS["pump-1"],
                       ca=secure.pki.ca)
    try:
        wait_until(lambda: agent.stats()["mqtt_connected"])
        own = f"gh/{site_id}/water_pump/pump-1/telemetry"
        other = f"gh/{site_id}/water_pump/pump-2/telemetry"
        t0 = time.time() - 100
        device.publish(own, pump_payload(t0))
        device.publish(other, pump_payload(t0 + 1))
        spoof = json.dumps({**json.loads(pump_payload(t0 + 2)), "device_id": "pump-2"})
        device.publish(own, spoof.encode())
        device.publish(own, pump_payload(t0 + 3))
        device.flush()
        wait_until(lambda: agent.stats()["received"] >= 3)
        time.sleep(0.2)
        stats = agent.stats()
        assert stats["received"] == 3, "the broker let pump-1 publish under pump-2's prefix"
        assert stats["readings"] == 2
        assert stats["rejects"] == {"foreign_prefix": 1}
        assert "edge-secret" not in agent.metrics.render()
    finally:
        device.close()
        agent.stop()


def test_client_certificate_authentication(secure: SecureBroker, tmp_path: Path) -> None:
    agent, site_id = agent_for(secure, tmp_path, MqttConfig(
        url=f"mqtts://127.0.0.1:{secure.cert_port}", ca_file=str(secure.pki.ca),
        cert_file=str(secure.pki.client_cert), key_file=str(secure.pki.client_key),
    ))
    agent.start()
    device = Publisher(secure.tls_port, username="pump-2", password=PASSWORDS["pump-2"],
                       ca=secure.pki.ca)
    try:
        wait_until(lambda: agent.stats()["mqtt_connected"])
        device.publish(f"gh/{site_id}/water_pump/pump-2/telemetry", pump_payload(time.time()))
        device.flush()
        wait_until(lambda: agent.stats()["readings"] == 1)
    finally:
        device.close()
        agent.stop()


@pytest.mark.parametrize(
    "how", ["anonymous_tls", "wrong_password", "plaintext_to_tls", "no_client_cert",
            "anonymous_plain"],
)
def test_unauthenticated_or_plaintext_connections_are_refused(
    secure: SecureBroker, tmp_path: Path, how: str
) -> None:
    ca = str(secure.pki.ca)
    pw = str(secure.secrets / "edge.pw")
    bad_pw = tmp_path / "bad.pw"
    bad_pw.write_text("nope\n")
    configs = {
        "anonymous_tls": MqttConfig(url=f"mqtts://127.0.0.1:{secure.tls_port}", ca_file=ca),
        "wrong_password": MqttConfig(
            url=f"mqtts://127.0.0.1:{secure.tls_port}", ca_file=ca, username=EDGE_USER,
            password_file=str(bad_pw),
        ),
        "plaintext_to_tls": MqttConfig(
            url=f"mqtt://127.0.0.1:{secure.tls_port}", username=EDGE_USER, password_file=pw
        ),
        "no_client_cert": MqttConfig(url=f"mqtts://127.0.0.1:{secure.cert_port}", ca_file=ca),
        "anonymous_plain": MqttConfig(url=f"mqtt://127.0.0.1:{secure.plain_port}"),
    }
    agent, _ = agent_for(secure, tmp_path / "edge", configs[how])
    agent.start()
    try:
        if how in ("anonymous_tls", "wrong_password", "anonymous_plain"):
            wait_until(lambda: agent.metrics.counter("mqtt_connect_failures") >= 1)
            assert "not authorized" in agent.health()["mqtt"]["error"].lower()
        else:  # the TLS handshake fails: give the client time to try (and fail) twice
            time.sleep(1.5)
        health = agent.health()
        assert not health["mqtt"]["connected"]
        assert "mqtt_disconnected" in health["reasons"]
        assert agent.stats()["mqtt_connected"] is False
    finally:
        agent.stop()


def _alarm(site_id: str) -> Event:
    return Event(
        event_id="alarm-000000001", site_id=site_id, gateway_id="gw-test", device_id="pump-1",
        kind="water_pump", type="pump.dry_running", severity="critical", state="raised", ts=1.0,
    )


@pytest.mark.parametrize("trusted", [True, False])
def test_cloud_over_https_verifies_its_certificate_and_never_logs_the_token(
    secure: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture, trusted: bool
) -> None:
    cloud = HttpFakeCloud(FakeCloud(token="s3cr3t-gateway-token"),
                          tls=(secure.pki.server_cert, secure.pki.server_key))
    site = make_site(
        f"c{uuid.uuid4().hex[:8]}", data_dir=tmp_path, cloud_url=cloud.url,
        token="s3cr3t-gateway-token", ca_file=str(secure.pki.ca) if trusted else None,
    )
    agent = Agent(
        site, profiles=PROFILES, options=AgentOptions(reserve_bytes=0, low_water_bytes=0),
        outputs={}, source_factory=SourceBox(),
    )
    caplog.set_level(logging.DEBUG)
    agent.start()
    try:
        agent.emit_event(_alarm(site.site_id))
        if trusted:
            wait_until(lambda: "alarm-000000001" in cloud.cloud.received)
        else:
            wait_until(lambda: agent.stats()["forward_failures"] >= 2)
            assert "CERTIFICATE_VERIFY_FAILED" in agent.health()["cloud"]["error"]
            assert not cloud.cloud.received
            assert agent.outbox.depth(CRITICAL) == 1
    finally:
        agent.stop()
        cloud.close()
    assert "s3cr3t-gateway-token" not in caplog.text
