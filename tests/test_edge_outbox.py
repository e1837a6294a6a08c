"""The outbox's lane rules: idempotent keys, FIFO, byte-bounded eviction counted durably,
critical never evicted, survival across reopen; and the retry pacing helpers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.backoff import Backoff, RateLimiter
from edge.deadletter import DeadLetters
from edge.outbox import CRITICAL, EVENTS, TELEMETRY, Entry, LaneSpec, Outbox, default_lanes
from edge.sqlite_store import integrity_check, open_store


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_put_is_idempotent_by_key_and_fifo(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.put(EVENTS, "a", b"1") is True
    assert box.put(EVENTS, "b", b"22") is True
    assert box.put(EVENTS, "a", b"1") is False
    assert [i.key for i in box.peek(EVENTS, 10)] == ["a", "b"]
    assert box.depth(EVENTS) == 2 and box.size_bytes(EVENTS) == 3
    assert box.ack(EVENTS, ["a", "zzz"]) == 1
    assert [i.key for i in box.peek(EVENTS, 10)] == ["b"]
    assert box.depth(EVENTS) == 1 and box.size_bytes(EVENTS) == 2


def test_lanes_are_separate(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put_many([Entry(CRITICAL, "k", b"c"), Entry(EVENTS, "k", b"e")])
    assert box.depth(CRITICAL) == 1 and box.depth(EVENTS) == 1
    assert box.peek(CRITICAL, 5)[0].payload == b"c"
    with pytest.raises(KeyError, match="unknown outbox lane"):
        box.put("nope", "k", b"x")


def test_bounded_lane_evicts_oldest_and_counts_records(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", default_lanes(telemetry_max_bytes=250))
    for i in range(5):
        box.put(TELEMETRY, f"t{i}", b"x" * 100, items=10)
    assert box.size_bytes(TELEMETRY) <= 250
    assert [i.key for i in box.peek(TELEMETRY, 10)] == ["t3", "t4"]
    assert box.evictions(TELEMETRY) == 30
    box.close()
    again = Outbox(tmp_path / "o.db", default_lanes(telemetry_max_bytes=250))
    assert again.evictions(TELEMETRY) == 30
    assert again.depth(TELEMETRY) == 2 and again.size_bytes(TELEMETRY) == 200


def test_critical_and_events_are_never_evicted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", default_lanes(telemetry_max_bytes=10))
    box.put_many(Entry(CRITICAL, f"c{i}", b"y" * 1000) for i in range(50))
    box.put_many(Entry(EVENTS, f"e{i}", b"y" * 1000) for i in range(50))
    assert box.depth(CRITICAL) == 50 and box.depth(EVENTS) == 50
    assert box.evictions(CRITICAL) == 0
    with pytest.raises(ValueError, match="never evicted"):
        box.shrink(CRITICAL, 0)


def test_shrink_makes_room(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    for i in range(4):
        box.put(TELEMETRY, f"t{i}", b"z" * 10, items=3)
    assert box.shrink(TELEMETRY, 15) == 9
    assert box.depth(TELEMETRY) == 1 and box.evictions(TELEMETRY) == 9


def test_oldest_age(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.db", clock=clock)
    assert box.oldest_age(EVENTS) is None
    box.put(EVENTS, "a", b"1")
    clock.t += 42
    box.put(EVENTS, "b", b"1")
    assert box.oldest_age(EVENTS) == pytest.approx(42)


def test_items_survive_reopen_and_wal_is_used(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    box.put(CRITICAL, "alarm", b"{}")
    box.close()
    assert Outbox(path).peek(CRITICAL, 1)[0].key == "alarm"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert integrity_check(path) == "ok"


def test_corrupt_store_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)
    box = Outbox(path)
    box.put(EVENTS, "a", b"1")
    assert box.depth(EVENTS) == 1
    assert list(tmp_path.glob("o.db.corrupt-*"))


def test_open_store_checks(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_lane_specs_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.db", [LaneSpec("a"), LaneSpec("a")])
    with pytest.raises(ValueError):
        default_lanes(0)


def test_deadletters_are_bounded(tmp_path: Path) -> None:
    dl = DeadLetters(tmp_path / "d.db", max_rows=5)
    dl.add_many((f"t{i}", "bad_json", "x", b"p" * 2000) for i in range(12))
    assert dl.count() == 5
    newest = dl.recent(1)[0]
    assert newest.topic == "t11" and len(newest.payload) == 512 and newest.size == 2000
    assert dl.by_reason() == {"bad_json": 5}


def test_backoff_is_jittered_exponential_and_capped() -> None:
    low = Backoff(0.5, 4.0, rng=lambda: 0.0)
    high = Backoff(0.5, 4.0, rng=lambda: 1.0)
    lows = [low.next_delay() for _ in range(8)]
    highs = [high.next_delay() for _ in range(8)]
    assert highs[:4] == [0.5, 1.0, 2.0, 4.0] and max(highs) == 4.0
    assert lows[:4] == [0.25, 0.5, 1.0, 2.0] and max(lows) == 2.0
    high.reset()
    assert high.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_rate_limiter_paces() -> None:
    clock = Clock(0.0)
    rate = RateLimiter(10.0, burst=10.0, clock=clock)
    assert rate.allowance() == 10
    rate.take(10)
    assert rate.allowance() == 0
    assert rate.delay_for(5) == pytest.approx(0.5)
    clock.t += 0.3
    assert rate.allowance() == 3
    assert RateLimiter(None).allowance() > 10**6
