"""Live camera simulator: paced JPEG frames over MQTT, ground truth, calibration output;
end to end through a real Mosquitto into an edge agent that opens the thrown-object order."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device_profiles.site import DeviceConfig
from simulators.camera import command
from simulators.camera.live import LiveCameraPublisher, frame_topic
from simulators.camera.render import ClipRenderer, ClipSpec
from simulators.truth import GroundTruth, read_truth
from tests.estate_stack import site_stack, wait_until
from tests.servers import Mosquitto


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeInfo:
    rc = 0

    def is_published(self) -> bool:
        return True


class FakeLink:
    """Records (clock time, topic, payload, qos); waiting in pump() advances the clock."""

    def __init__(self, clock: FakeClock, render_cost: float = 0.0) -> None:
        self.clock = clock
        self.render_cost = render_cost
        self.sent: list[tuple[float, str, bytes, int]] = []
        self.flushed_last: Any = None

    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> Any:
        assert isinstance(payload, bytes)
        self.sent.append((self.clock.now, topic, payload, qos))
        self.clock.now += self.render_cost
        return FakeInfo()

    def pump(self, timeout: float = 0.0) -> None:
        self.clock.now += timeout

    def flush(self, last: Any = None, timeout: float = 10.0) -> bool:
        self.flushed_last = last
        return True


def _renderer(seconds: float = 7.0, throws: int = 1) -> ClipRenderer:
    return ClipRenderer(ClipSpec("live", seed=42, seconds=seconds, width=320, height=180,
                                 throws=throws, size_range=(40.0, 60.0)))


def test_frames_are_paced_jpegs_on_the_camera_topic_and_truth_is_wall_clock(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    link = FakeLink(clock)
    renderer = _renderer()
    with GroundTruth(tmp_path / "truth.jsonl") as truth:
        stats = LiveCameraPublisher(
            renderer, link, site_id="s1", device_id="cam-1", quality=70, truth=truth,
            clock=clock, wall=lambda: 1_700_000_000.0,
        ).run()
    assert stats.frames == len(link.sent) == 7 * 25
    assert stats.late_frames == 0 and stats.flushed and stats.throws == 1
    times = [t for t, _, _, _ in link.sent]
    assert times == pytest.approx([100.0 + i / 25 for i in range(len(times))])
    assert {(topic, qos) for _, topic, _, qos in link.sent} == {("gh/s1/camera/cam-1/frame", 1)}
    image = cv2.imdecode(np.frombuffer(link.sent[0][2], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape == (180, 320)
    assert link.flushed_last is not None
    (rec,) = read_truth(tmp_path / "truth.jsonl")
    throw = renderer.meta().throws[0]
    assert (rec.device_id, rec.kind, rec.type) == ("cam-1", "camera", "camera.object_thrown")
    assert rec.start == pytest.approx(1_700_000_000.0 + throw.release_frame / 25, abs=1e-3)
    assert rec.end == pytest.approx(1_700_000_000.0 + throw.impact_frame / 25, abs=1e-3)
    assert rec.end > rec.start
    assert rec.params["floor"] == throw.floor and rec.params["x"] == round(throw.x, 1)


def test_a_slow_renderer_is_reported_as_lag_without_stretching_the_schedule() -> None:
    clock = FakeClock()
    link = FakeLink(clock, render_cost=0.07)
    stats = LiveCameraPublisher(
        _renderer(seconds=1.0, throws=0), link, site_id="s1", device_id="cam-1",
        clock=clock, wall=lambda: 0.0,
    ).run()
    assert stats.frames == 25
    assert stats.late_frames == 24
    assert stats.max_lag_s == pytest.approx(24 * 0.07 - 24 / 25, abs=1e-6)
    assert stats.throws == 0


@pytest.mark.parametrize(("site", "device"), [("s/1", "cam"), ("s1", ""), ("s1", "c#")])
def test_bad_topic_parts_are_refused(site: str, device: str) -> None:
    with pytest.raises(ValueError, match="id"):
        frame_topic(site, device)


def test_bad_options_are_refused_before_publishing() -> None:
    link = FakeLink(FakeClock())
    with pytest.raises(ValueError, match="quality"):
        LiveCameraPublisher(_renderer(1.0, 0), link, site_id="s", device_id="c", quality=0)
    with pytest.raises(ValueError, match="qos"):
        LiveCameraPublisher(_renderer(1.0, 0), link, site_id="s", device_id="c", qos=3)
    assert link.sent == []


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.configure(parser)
    return parser.parse_args(list(argv))


def test_cli_needs_out_or_broker_and_broker_needs_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert command.run(_args()) == 2
    assert command.run(_args("--broker", "mqtt://127.0.0.1:1")) == 2
    assert "--site-id" in capsys.readouterr().err
    unreachable = _args("--broker", "mqtt://127.0.0.1:1", "--site-id", "s", "--device", "c",
                        "--seconds", "1", "--throws", "0", "--width", "320", "--height", "180")
    assert command.run(unreachable) == 1
    assert "cannot connect" in capsys.readouterr().err


@pytest.mark.integration
def test_live_clip_over_mosquitto_opens_the_thrown_object_order(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = ("--seed", "42", "--seconds", "7", "--width", "640", "--height", "360",
            "--throws", "1", "--min-size", "40", "--max-size", "60")
    assert command.run(_args(*clip, "--print-calibration")) == 0
    calibration = json.loads(capsys.readouterr().out.strip())
    site_id = f"l{uuid.uuid4().hex[:8]}"
    camera = DeviceConfig(
        id="b1-cam-1", kind="camera", building="B1",
        params={"source": "mqtt", "calibration": calibration, "fps": 25},
    )
    truth_file = tmp_path / "truth.jsonl"
    with site_stack(tmp_path, broker.url, site_id, [camera]) as stack:
        code = command.run(_args(*clip, "--broker", broker.url, "--site-id", site_id,
                                 "--device", "b1-cam-1", "--truth", str(truth_file)))
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0
        assert summary["frames"] == 175 and summary["flushed"]
        assert summary["topic"] == f"gh/{site_id}/camera/b1-cam-1/frame"

        def thrown() -> bool:
            return any(o["event_type"] == "camera.object_thrown" for o in stack.orders())

        wait_until(thrown, 60, "the thrown-object work order")
        order = next(o for o in stack.orders() if o["event_type"] == "camera.object_thrown")
        assert (order["priority"], order["category"]) == ("P1", "security")
        (truth,) = read_truth(truth_file)
        device = stack.api.get("/api/v1/devices/b1-cam-1").json()
        (event,) = [e for e in device["events"] if e["type"] == "camera.object_thrown"]
        assert abs(event["evidence"]["floor"] - truth.params["floor"]) <= 1
        stats = stack.agent.stats()
        assert stats["camera_frames"] == 175
        assert stats["messages_rejected"] == 0


class InterruptedRenderer:
    """A real clip whose frame source is interrupted after ``stop_after`` frames."""

    def __init__(self, inner: ClipRenderer, stop_after: int) -> None:
        self.spec = inner.spec
        self._inner = inner
        self._stop_after = stop_after

    def frames(self) -> Any:
        for i, frame in enumerate(self._inner.frames()):
            if i == self._stop_after:
                raise KeyboardInterrupt
            yield frame

    def meta(self) -> Any:
        return self._inner.meta()


def test_an_interrupted_run_still_writes_the_truth_of_throws_already_released(
    tmp_path: Path,
) -> None:
    inner = _renderer()
    release = inner.meta().throws[0].release_frame
    clock = FakeClock()
    link = FakeLink(clock)
    with GroundTruth(tmp_path / "truth.jsonl") as truth, pytest.raises(KeyboardInterrupt):
        LiveCameraPublisher(
            InterruptedRenderer(inner, release + 5), link, site_id="s1", device_id="cam-1",
            truth=truth, clock=clock, wall=lambda: 0.0,
        ).run()
    assert len(link.sent) == release + 5
    (rec,) = read_truth(tmp_path / "truth.jsonl")
    assert rec.start == pytest.approx(release / 25)
    assert rec.end == pytest.approx((release + 4) / 25)
