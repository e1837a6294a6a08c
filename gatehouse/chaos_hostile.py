"""Hostile and malformed MQTT traffic for the chaos run: every message must be refused and
counted by the edge, while the good traffic around it is delivered as if nothing happened.

:func:`hostile_messages` builds a deterministic mix (seeded) of messages the edge must
refuse: unknown devices, kinds that do not match the device, foreign identities in the
payload, broken or non-finite JSON, arrays, missing or absurd timestamps, wrong types,
unknown fields, oversized payloads, unknown native events, bad status words, random
bytes. All are under the site's own prefix, so the edge receives each one. The
property-based (hypothesis) version of this lives in ``tests/test_edge_hostile.py``; here the
point is the same refusal under load and faults, with the count checked against the
edge's ``rejects_total``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any


def _telemetry(rng: random.Random, ts: float) -> dict[str, Any]:
    return {"ts": ts, "accel1_rms": 0.2, "accel2_rms": 0.25, "current_a": 3.0,
            "pressure_bar": 3.0 + rng.random() * 0.01}


def hostile_messages(site_id: str, pump: str, gate: str, n: int, seed: int = 1,
                     now: float | None = None) -> list[tuple[str, bytes]]:
    """``n`` messages the edge must each refuse. ``pump`` is a water pump of the site and
    ``gate`` an access gate (their real topics are used with bad payloads). The same
    arguments give the same messages; ``now`` (default: the clock) is their timestamp."""
    rng = random.Random(seed)
    base = f"gh/{site_id}"
    pump_t = f"{base}/water_pump/{pump}/telemetry"
    now = time.time() if now is None else now

    def unknown_device(i: int) -> tuple[str, bytes]:
        return (f"{base}/water_pump/intruder-{i}/telemetry",
                json.dumps(_telemetry(rng, now)).encode())

    def kind_mismatch(i: int) -> tuple[str, bytes]:
        return (f"{base}/elevator/{pump}/telemetry", json.dumps(_telemetry(rng, now)).encode())

    def foreign_identity(i: int) -> tuple[str, bytes]:
        body = {**_telemetry(rng, now), "device_id": f"someone-else-{i}"}
        return pump_t, json.dumps(body).encode()

    def broken_json(i: int) -> tuple[str, bytes]:
        text = json.dumps(_telemetry(rng, now))
        return pump_t, text[: rng.randrange(1, len(text) - 1)].encode()

    def non_finite(i: int) -> tuple[str, bytes]:
        word = rng.choice(["NaN", "Infinity", "-Infinity"])
        return pump_t, f'{{"ts": {now}, "current_a": {word}}}'.encode()

    def array(i: int) -> tuple[str, bytes]:
        return pump_t, json.dumps([_telemetry(rng, now)]).encode()

    def missing_ts(i: int) -> tuple[str, bytes]:
        body = _telemetry(rng, now)
        del body["ts"]
        return pump_t, json.dumps(body).encode()

    def absurd_ts(i: int) -> tuple[str, bytes]:
        body = {**_telemetry(rng, now), "ts": rng.choice([-1.0, 9e12, "yesterday"])}
        return pump_t, json.dumps(body).encode()

    def wrong_type(i: int) -> tuple[str, bytes]:
        body = {**_telemetry(rng, now), "current_a": rng.choice(["high", [1], {"a": 1}])}
        return pump_t, json.dumps(body).encode()

    def unknown_field(i: int) -> tuple[str, bytes]:
        body = {**_telemetry(rng, now), f"x_{i}": 1.0}
        return pump_t, json.dumps(body).encode()

    def too_large(i: int) -> tuple[str, bytes]:
        return pump_t, b'{"ts": 1, "pad": "' + b"A" * (70 * 1024) + b'"}'

    def unknown_native(i: int) -> tuple[str, bytes]:
        return (f"{base}/access_gate/{gate}/event",
                json.dumps({"ts": now, "type": f"explode_{i % 7}"}).encode())

    def bad_status(i: int) -> tuple[str, bytes]:
        return (f"{base}/water_pump/{pump}/status",
                rng.choice([b"maybe", b"{}", b"\xff\xfe", b"ONLINE!"]))

    def random_bytes(i: int) -> tuple[str, bytes]:
        return pump_t, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))) + b"\xff"

    makers: list[Callable[[int], tuple[str, bytes]]] = [
        unknown_device, kind_mismatch, foreign_identity, broken_json, non_finite, array,
        missing_ts, absurd_ts, wrong_type, unknown_field, too_large, unknown_native,
        bad_status, random_bytes,
    ]
    common = [m for m in makers if m is not too_large]
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        if i < len(makers):
            maker = makers[i]
        elif i % 100 == 0:
            maker = too_large
        else:
            maker = rng.choice(common)
        out.append(maker(i))
    return out


def publish_all(host: str, port: int, messages: list[tuple[str, bytes]],
                timeout: float = 120.0) -> int:
    """Publish ``messages`` at QoS 1 from one client; return how many the broker acked."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-hostile",
                         protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        return sum(1 for info in infos if info.rc == 0 and info.is_published())
    finally:
        client.disconnect()
        client.loop_stop()
