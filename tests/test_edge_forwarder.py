"""The forwarder against a fake cloud: drain order, acknowledgement rules, retries."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from device_profiles.messages import Event
from edge.deadletter import DeadLetters
from edge.events import outbox_entry
from edge.forwarder import Forwarder
from edge.metrics import Metrics
from edge.outbox import CRITICAL, EVENTS, Outbox
from tests.servers_edge import FakeCloud


def event(i: int, severity: str = "warning") -> Event:
    return Event(
        event_id=f"evt-{i:06d}", site_id="s1", gateway_id="gw", device_id="pump-1",
        kind="water_pump", type="pump.bearing_wear", severity=severity,
        state="raised", ts=1000.0 + i,
    )


def setup(
    tmp_path: Path, cloud: FakeCloud, **kw: object
) -> tuple[Outbox, DeadLetters, Forwarder, Metrics]:
    box = Outbox(tmp_path / "o.db")
    dl = DeadLetters(tmp_path / "d.db")
    metrics = Metrics()
    fwd = Forwarder(
        box, base_url="http://cloud.test", token="gw-token", client=cloud.client(),
        deadletters=dl, metrics=metrics, rng=lambda: 1.0, retry_initial=0.5, retry_max=4.0,
        **kw,  # type: ignore[arg-type]
    )
    return box, dl, fwd, metrics


def test_critical_lane_goes_first(tmp_path: Path) -> None:
    cloud = FakeCloud()
    box, _, fwd, _ = setup(tmp_path, cloud, batch_size=3)
    box.put_many(outbox_entry(event(i)) for i in range(4))
    box.put_many(outbox_entry(event(100 + i, "critical")) for i in range(2))
    fwd.run_once()
    assert cloud.batches[0] == ["evt-000100", "evt-000101", "evt-000000"]
    while fwd.run_once().outcome == "sent":
        pass
    assert box.depth(CRITICAL) == 0 and box.depth(EVENTS) == 0
    assert len(cloud.received) == 6


def test_duplicates_are_deleted_and_rejections_dead_lettered(tmp_path: Path) -> None:
    cloud = FakeCloud(reject={"evt-000002"})
    cloud.received["evt-000001"] = {}
    box, dl, fwd, metrics = setup(tmp_path, cloud)
    box.put_many(outbox_entry(event(i)) for i in range(3))
    attempt = fwd.run_once()
    assert attempt.outcome == "sent" and attempt.rejected == 1
    assert box.depth(EVENTS) == 0
    letters = dl.recent()
    assert [(x.reason, json.loads(x.payload)["event_id"]) for x in letters] == [
        ("cloud_rejected", "evt-000002")
    ]
    assert metrics.counter("forward_duplicates") == 1


def test_outage_keeps_everything_and_backs_off_capped(tmp_path: Path) -> None:
    cloud = FakeCloud(down=True)
    box, _, fwd, metrics = setup(tmp_path, cloud)
    box.put_many(outbox_entry(event(i)) for i in range(5))
    delays = [fwd.run_once().delay for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert box.depth(EVENTS) == 5
    assert metrics.counter("forward_failures", reason="connection") == 6
    cloud.down = False
    assert fwd.run_once().outcome == "sent"
    assert box.depth(EVENTS) == 0 and fwd.last_error == ""


def test_wrong_token_and_server_errors_keep_events(tmp_path: Path) -> None:
    cloud = FakeCloud(token="other")
    box, _, fwd, metrics = setup(tmp_path, cloud)
    box.put(EVENTS, "evt-000001", outbox_entry(event(1)).payload)
    assert fwd.run_once().outcome == "retry"
    assert metrics.counter("forward_failures", reason="auth") == 1
    cloud.token, cloud.status = "gw-token", 503
    assert fwd.run_once().outcome == "retry"
    assert metrics.counter("forward_failures", reason="http_503") == 1
    assert box.depth(EVENTS) == 1


def test_a_poison_event_is_isolated_by_halving(tmp_path: Path) -> None:
    bad = "evt-000005"

    def handler(request: httpx.Request) -> httpx.Response:
        ids = [e["event_id"] for e in json.loads(request.content)["events"]]
        if bad in ids:
            return httpx.Response(422, json={"detail": "bad event"})
        return httpx.Response(200, json={"accepted": ids})

    box = Outbox(tmp_path / "o.db")
    dl = DeadLetters(tmp_path / "d.db")
    fwd = Forwarder(
        box, base_url="http://c", token="t", deadletters=dl, batch_size=8,
        client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    box.put_many(outbox_entry(event(i)) for i in range(8))
    for _ in range(20):
        if fwd.run_once().outcome == "idle":
            break
    assert box.depth(EVENTS) == 0
    assert [json.loads(x.payload)["event_id"] for x in dl.recent()] == [bad]


def test_drain_rate_limits_batches(tmp_path: Path) -> None:
    now = [0.0]
    cloud = FakeCloud()
    box = Outbox(tmp_path / "o.db")
    fwd = Forwarder(
        box, base_url="http://c", token="gw-token", client=cloud.client(), batch_size=100,
        drain_rate=5.0, clock=lambda: now[0],
    )
    box.put_many(outbox_entry(event(i)) for i in range(20))
    first = fwd.run_once()
    assert first.outcome == "sent" and first.sent == 5
    limited = fwd.run_once()
    assert limited.outcome == "rate_limited" and limited.delay > 0
    now[0] += 1.0
    assert fwd.run_once().sent == 5
    assert box.depth(EVENTS) == 10


def test_retry_after_is_honoured_up_to_the_cap(tmp_path: Path) -> None:
    answers = iter([("3", 503), ("600", 429), ("soon", 503)])

    def handler(request: httpx.Request) -> httpx.Response:
        value, status = next(answers)
        return httpx.Response(status, headers={"Retry-After": value})

    box = Outbox(tmp_path / "o.db")
    fwd = Forwarder(
        box, base_url="http://c", token="t", retry_initial=0.5, retry_max=10.0,
        client=httpx.Client(transport=httpx.MockTransport(handler)), rng=lambda: 1.0,
    )
    box.put_many([outbox_entry(event(1))])
    assert fwd.run_once().delay == 3.0
    assert fwd.run_once().delay == 10.0
    assert fwd.run_once().delay == 2.0
    assert box.depth(EVENTS) == 1
