"""Crash safety: SIGKILL a real ``gatehouse edge`` process again and again while devices
publish; every event still reaches the cloud and the stores stay sound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from device_profiles.messages import make_event_id
from device_profiles.site import DeviceConfig, dump_site
from edge.sqlite_store import integrity_check
from tests.servers import Mosquitto, free_port
from tests.servers_edge import HttpFakeCloud, Publisher, make_site, pump_payload

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


class EdgeProcess:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gatehouse", "edge", "--config", str(self.config),
                 "--http-port", str(self.port), "--reserve-mb", "0", "--low-water-mb", "0"],
                cwd=ROOT, stdout=log, stderr=log,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).json()
                if health["mqtt"]["connected"]:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            time.sleep(0.1)
        raise AssertionError(f"edge did not connect: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


def test_sigkill_loses_no_acknowledged_event(broker: Mosquitto, tmp_path: Path) -> None:
    site_id = f"k{uuid.uuid4().hex[:10]}"
    cloud = HttpFakeCloud()
    site = make_site(
        site_id, data_dir=tmp_path / "edge", mqtt_url=broker.url, cloud_url=cloud.url,
        devices=[DeviceConfig(id="gate-1", kind="access_gate"),
                 DeviceConfig(id="pump-1", kind="water_pump")],
    )
    config = tmp_path / "site.yaml"
    dump_site(site, config)
    edge = EdgeProcess(config, free_port(), tmp_path / "edge.log")
    edge.start()

    n = 600
    t0 = time.time() - 3600
    expected = {
        make_event_id(site_id, "gate-1", "gate.forced_open", round(t0 + i, 3), "raised")
        for i in range(n)
    }
    done = threading.Event()

    def devices() -> None:
        pub = Publisher(broker.port)
        for i in range(n):
            event = {"ts": round(t0 + i, 3), "type": "forced_open"}
            pub.publish(f"gh/{site_id}/access_gate/gate-1/event", json.dumps(event).encode())
            pub.publish(f"gh/{site_id}/water_pump/pump-1/telemetry", pump_payload(t0 + i))
            if i % 20 == 0:
                pub.flush()
                time.sleep(0.15)
        pub.close()
        done.set()

    publisher = threading.Thread(target=devices)
    publisher.start()
    kills = 0
    try:
        while not done.is_set() or kills < 5:
            time.sleep(0.3 + 0.2 * (kills % 3))
            edge.kill()
            kills += 1
            assert integrity_check(tmp_path / "edge" / "outbox.db") == "ok"
            edge.start()
        publisher.join()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not expected <= cloud.cloud.received.keys():
            time.sleep(0.2)
        missing = expected - cloud.cloud.received.keys()
        assert not missing, f"{len(missing)} of {n} events lost after {kills} kills"
        assert edge.terminate() == 0
        assert integrity_check(tmp_path / "edge" / "outbox.db") == "ok"
        assert integrity_check(tmp_path / "edge" / "deadletters.db") == "ok"
    finally:
        if edge.proc is not None and edge.proc.poll() is None:
            edge.kill()
        cloud.close()
