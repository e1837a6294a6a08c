"""A full disk, for real: the agent's data folder on a tiny tmpfs that the test fills.

The agent stays up, critical events still become durable (they take the reserve), other
events and the MQTT acks wait, health says degraded; when space returns the agent
recovers by itself and nothing is lost."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Reading
from edge.outbox import CRITICAL
from edge.runner import Agent, AgentOptions
from tests.servers_edge import FakeCloud, SourceBox, fake_monitors, make_site, pump_payload

PROFILES = load_profiles()
PUMP = "gh/s1/water_pump/pump-1/telemetry"
MB = 1024 * 1024


def wait_until(
    cond: Callable[[], bool], timeout: float = 20.0, state: Callable[[], object] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not reached in time; state: {state()}")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it (delete it to free the space)."""
    filler = directory / "filler.bin"
    chunk = b"\1" * 65536
    with open(filler, "wb") as f:
        while True:
            try:
                f.write(chunk)
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    with contextlib.suppress(OSError), open(filler, "ab") as f:
        for _ in range(64):
            f.write(b"\1" * 1024)
            f.flush()
    return filler


class DownOutput:
    def write(self, readings: Sequence[Reading]) -> None:
        raise ConnectionError("tsdb down")

    def close(self) -> None:
        pass


def test_full_disk_keeps_critical_events_and_recovers(tiny_disk: Path) -> None:
    box, cloud = SourceBox(), FakeCloud(down=True)
    agent = Agent(
        make_site("s1", data_dir=tiny_disk), profiles=PROFILES,
        options=AgentOptions(
            reserve_bytes=MB, low_water_bytes=256 * 1024, tick_interval=0.05, held_retry=0.1,
        ),
        outputs={"tsdb": DownOutput()}, monitor_factory=fake_monitors, source_factory=box,
        http_client=cloud.client(),
    )
    agent.start()
    try:
        src = box.get
        wait_until(lambda: agent.health()["status"] == "ok")
        filler = fill(tiny_disk)
        wait_until(lambda: "disk_low" in agent.health()["reasons"])

        pushed = 0
        while "store_full" not in agent.health()["reasons"]:
            assert pushed < 20_000, "the disk never filled"
            for _ in range(50):
                accel = 2.0 if pushed % 2 else 0.2
                src.push(PUMP, pump_payload(1000.0 + pushed, accel1_rms=accel))
                pushed += 1
            wait_until(lambda n=pushed: agent.stats()["received"] == n)  # type: ignore[misc]
        wait_until(lambda: "store_full" in agent.health()["reasons"])
        assert agent.stats()["acked"] < pushed

        src.push(PUMP, pump_payload(9000.0, current_a=15.0))
        wait_until(lambda: agent.outbox.depth(CRITICAL) == 1)
        assert agent.metrics.counter("reserve_releases") == 1
        assert "reserve_used" in agent.health()["reasons"]
        assert agent.stats()["acked"] < pushed + 1
        assert agent.stats()["telemetry_dropped"] > 0

        filler.unlink()
        wait_until(lambda: agent.stats()["acked"] == pushed + 1,
                   state=lambda: (agent.stats(), agent.health(), agent.metrics.render()))
        wait_until(lambda: agent.health()["reasons"] == ["cloud_unreachable"])
        cloud.down = False
        wait_until(lambda: agent.health()["status"] == "ok")
        wait_until(lambda: len(cloud.received) == agent.stats()["events"])
        assert agent.stats()["events"] >= pushed // 2
    finally:
        agent.stop()
