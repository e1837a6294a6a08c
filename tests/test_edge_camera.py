"""Cameras inside the edge agent: JPEG frames over MQTT -> thrown-object alarm -> a security
work order in the cloud, with the evidence image uploaded and served to the dashboard."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt
import pytest

from device_profiles.site import DeviceConfig
from simulators.camera.render import ClipRenderer, ClipSpec
from tests.estate_stack import site_stack, wait_until
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def test_frames_over_mqtt_become_a_security_order_with_evidence(
    broker: Mosquitto, tmp_path: Path
) -> None:
    renderer = ClipRenderer(
        ClipSpec("agent", seed=42, seconds=7.0, width=640, height=360, throws=1,
                 size_range=(40.0, 60.0))
    )
    frames = list(renderer.frames())
    meta = renderer.meta()
    site_id = f"c{uuid.uuid4().hex[:8]}"
    camera = DeviceConfig(
        id="b1-cam-1", kind="camera", building="B1",
        params={"source": "mqtt", "calibration": meta.calibration.to_dict(), "fps": 25},
    )
    with site_stack(tmp_path, broker.url, site_id, [camera]) as stack:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{site_id}-cam")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            topic = f"gh/{site_id}/camera/b1-cam-1/frame"
            for frame in frames:
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
                assert ok
                pub.publish(topic, jpeg.tobytes(), qos=1).wait_for_publish(10)
                time.sleep(0.01)
            pub.publish(topic, b"not a jpeg", qos=1).wait_for_publish(10)
            ghost = f"gh/{site_id}/camera/no-such-cam/frame"
            pub.publish(ghost, b"\xff\xd8junk", qos=1).wait_for_publish(10)
        finally:
            pub.loop_stop()
            pub.disconnect()

        def thrown() -> bool:
            return any(o["event_type"] == "camera.object_thrown" for o in stack.orders())

        wait_until(thrown, 60, "the thrown-object work order")
        order = next(o for o in stack.orders() if o["event_type"] == "camera.object_thrown")
        assert (order["priority"], order["category"]) == ("P1", "security")
        assert order["team"] == "security"
        device = stack.api.get("/api/v1/devices/b1-cam-1").json()
        (event,) = [e for e in device["events"] if e["type"] == "camera.object_thrown"]
        evidence = event["evidence"]
        assert abs(evidence["floor"] - meta.throws[0].floor) <= 1
        snapshot = evidence["snapshot"]
        assert (tmp_path / "edge" / "evidence" / snapshot).is_file()

        def uploaded() -> bool:
            reply = stack.api.get(f"/api/v1/evidence/{site_id}/{snapshot}")
            return reply.status_code == 200

        wait_until(uploaded, 30, "the evidence image in the cloud")
        image = stack.api.get(f"/api/v1/evidence/{site_id}/{snapshot}")
        assert image.headers["content-type"] == "image/jpeg"
        wait_until(
            lambda: stack.agent.stats()["cameras"]["b1-cam-1"]["decode_errors"] == 1, 30,
            "the garbage frame counted as a decode error",
        )
        stats = stack.agent.stats()
        assert stats["camera_frames"] == len(frames) + 1
        assert stats["cameras"]["b1-cam-1"]["alarms"] == 1
        assert stats["messages_rejected"] == 1, stats["rejects"]
        assert sum(stats["rejects"].values()) == 1
