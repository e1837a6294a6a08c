"""The telemetry writer thread: order, merging, back-pressure (never a drop), idle replay,
clean stop; and in the agent: a burst is acknowledged only once its readings are written or
spooled, a stop writes what is queued, the outputs never run on the runner thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from device_profiles.loader import load_profiles
from device_profiles.messages import Event, Reading
from edge import runner
from edge.outbox import TELEMETRY
from edge.outputs.writer_thread import TelemetryWriterThread
from edge.runner import Agent, AgentOptions
from tests.servers_edge import SourceBox, fake_monitors, make_site, pump_payload

PROFILES = load_profiles()
PUMP = "gh/s1/water_pump/pump-1/telemetry"


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError("condition not reached in time")


class Recorder:
    """write callbacks that record calls and can be held (blocked) by the test."""

    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.events: list[list[str]] = []
        self.idles = 0
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def write(self, readings: list[int]) -> None:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(10)
        self.writes.append(list(readings))

    def write_events(self, events: list[str]) -> None:
        self.events.append(list(events))

    def idle(self) -> None:
        self.idles += 1


def make(rec: Recorder, **kw: object) -> TelemetryWriterThread[int, str]:
    return TelemetryWriterThread(rec.write, rec.write_events, rec.idle, **kw)  # type: ignore[arg-type]


def held(rec: Recorder, first: list[int], **kw: object) -> tuple[
    TelemetryWriterThread[int, str], int
]:
    """A started writer whose first write (of ``first``) is in progress and held by the
    recorder's gate; returns the writer and that burst's sequence number."""
    w = make(rec, **kw)
    w.start()
    rec.gate.clear()
    seq = w.submit(first)
    assert rec.entered.wait(5)  # the first burst is being written (held)
    return w, seq


def test_bursts_are_written_in_order_and_merged_while_the_writer_is_busy() -> None:
    rec = Recorder()
    w, first = held(rec, [1], max_items=10, max_merge=6)
    assert first == 1
    seqs = [w.submit([2 * i, 2 * i + 1]) for i in range(1, 5)]
    w.submit_events(["e1"])
    w.submit([100])
    assert seqs == [2, 3, 4, 5] and w.done == 0
    rec.gate.set()
    wait_until(lambda: w.done == 6)
    assert rec.writes == [[1], [2, 3, 4, 5, 6, 7], [8, 9], [100]], "merged up to max_merge"
    assert rec.events == [["e1"]], "an event batch keeps its place between the bursts"
    assert w.stop()
    assert rec.threads == {"edge-telemetry"}


def test_a_full_queue_makes_submit_wait_and_nothing_is_dropped() -> None:
    rec = Recorder()
    full: list[int] = []
    w, _ = held(rec, [0], max_items=2, max_merge=1, on_full=lambda: full.append(1))
    w.submit([1])
    w.submit([2])  # the queue (2) is now full
    done = threading.Event()

    def producer() -> None:
        w.submit([3])
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.3), "submit must wait while the queue is full"
    assert full == [1]
    rec.gate.set()
    assert done.wait(5)
    wait_until(lambda: w.done == 4)
    assert [r for batch in rec.writes for r in batch] == [0, 1, 2, 3]
    w.stop()


def test_small_bursts_join_the_last_queued_one_instead_of_filling_the_queue() -> None:
    """While a write is in flight, a stream of small bursts must not make the runner wait:
    the bound counts writes, and small bursts share one."""
    rec = Recorder()
    full: list[int] = []
    w, _ = held(rec, [0], max_items=2, max_merge=50, on_full=lambda: full.append(1))
    seqs = [w.submit([i]) for i in range(1, 101)]  # 100 bursts; room for 2 writes of 50
    assert full == [], "submit waited for room"
    assert seqs == list(range(2, 102))
    rec.gate.set()
    wait_until(lambda: w.done == 101)
    assert [r for batch in rec.writes for r in batch] == list(range(101)), "order kept"
    assert [len(b) for b in rec.writes] == [1, 50, 50]
    assert w.stop()


def test_stop_writes_everything_queued() -> None:
    rec = Recorder()
    w = make(rec, max_items=100, max_merge=1)
    w.start()
    rec.gate.clear()
    for i in range(20):
        w.submit([i])
    rec.gate.set()
    assert w.stop(timeout=5)
    assert [r for batch in rec.writes for r in batch] == list(range(20))
    assert w.done == w.submitted == 20
    w.submit([99])  # after stop: written on the caller's thread, still counted
    assert rec.writes[-1] == [99] and w.done == 21


def test_idle_runs_on_the_thread_even_while_bursts_keep_coming() -> None:
    rec = Recorder()
    w = make(rec, idle_interval=0.05)
    w.start()
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        w.submit([1])
        time.sleep(0.002)
    w.stop()
    assert rec.idles >= 3


def test_while_messages_keep_arriving_small_bursts_are_gathered_into_few_writes() -> None:
    rec = Recorder()
    w = make(rec, linger=0.5, more_coming=lambda: True)
    w.start()
    for i in range(20):  # a steady trickle: one small burst every 5 ms, 100 ms in all
        w.submit([i])
        time.sleep(0.005)
    wait_until(lambda: w.done == 20)
    assert [r for batch in rec.writes for r in batch] == list(range(20)), "order kept"
    assert len(rec.writes) <= 3, f"{len(rec.writes)} writes for 20 bursts in one linger"
    assert w.stop()


def test_a_quiet_source_is_written_at_once_whatever_the_linger() -> None:
    """An idle site, or a broker that sends no more until it gets acks: no waiting."""
    rec = Recorder()
    done: list[int] = []
    w = make(rec, linger=30.0, more_coming=lambda: False, on_done=lambda: done.append(1))
    w.start()
    started = time.monotonic()
    w.submit([1, 2])
    wait_until(lambda: w.done == 1)
    assert time.monotonic() - started < 10.0, "the write waited for the 30 s linger"
    wait_until(lambda: done == [1])  # on_done follows each written burst
    assert rec.writes == [[1, 2]]
    assert w.stop()


def test_lingering_ends_at_an_event_batch_and_at_max_merge() -> None:
    rec = Recorder()
    arriving = threading.Event()
    w = make(rec, linger=30.0, more_coming=arriving.is_set, max_merge=4)
    w.start()
    rec.gate.clear()
    w.submit([0])
    assert rec.entered.wait(5)  # held: the next ones queue up behind it
    arriving.set()  # from now on the writer would linger 30 s if nothing ended it
    w.submit([1])
    w.submit_events(["e"])
    w.submit([2, 3])
    w.submit([4, 5])
    started = time.monotonic()
    rec.gate.set()
    wait_until(lambda: w.done == 4, timeout=10)
    assert time.monotonic() - started < 10.0
    assert rec.writes == [[0], [1], [2, 3, 4, 5]]
    assert rec.events == [["e"]]
    w.stop()


def test_a_negative_linger_is_refused() -> None:
    rec = Recorder()
    try:
        make(rec, linger=-1.0, more_coming=lambda: True)
    except ValueError as exc:
        assert "linger" in str(exc)
    else:
        raise AssertionError("a negative linger was accepted")


def test_an_unexpected_error_is_counted_and_the_burst_still_counts_as_done() -> None:
    errors: list[int] = []

    def broken(readings: list[int]) -> None:
        raise RuntimeError("bug")

    w: TelemetryWriterThread[int, str] = TelemetryWriterThread(
        broken, lambda e: None, lambda: None, on_error=lambda: errors.append(1)
    )
    w.start()
    w.submit([1])
    wait_until(lambda: w.done == 1)
    assert errors == [1]
    w.stop()


# ----------------------------------------------------------------- in the agent


class HeldOutput:
    """An output whose writes block until the test opens the gate."""

    def __init__(self) -> None:
        self.stored: list[Reading] = []
        self.gate = threading.Event()
        self.threads: set[str] = set()
        self.events: list[Event] = []

    def write(self, readings: Sequence[Reading]) -> None:
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(10)
        self.stored.extend(readings)

    def write_events(self, events: Sequence[Event]) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.extend(events)

    def close(self) -> None:
        pass


def agent_with(
    output: HeldOutput, tmp_path: Path, tick_interval: float = 0.05
) -> tuple[Agent, SourceBox]:
    box = SourceBox()
    agent = Agent(
        make_site("s1", data_dir=tmp_path / "edge"), profiles=PROFILES,
        options=AgentOptions(reserve_bytes=0, low_water_bytes=0, forward=False,
                             tick_interval=tick_interval),
        outputs={"tsdb": output}, monitor_factory=fake_monitors, source_factory=box,
    )
    return agent, box


def test_a_burst_is_acked_only_after_its_readings_are_written(tmp_path: Path) -> None:
    output = HeldOutput()
    agent, box = agent_with(output, tmp_path)
    agent.start()
    try:
        mids = [box.get.push(PUMP, pump_payload(100.0 + i)) for i in range(5)]
        wait_until(lambda: agent.stats()["readings"] == 5)
        time.sleep(0.3)
        assert box.get.acked == [], "no ack while the readings are not written"
        mids.append(box.get.push(PUMP, pump_payload(105.0, current_a=15.0)))  # raises an event
        output.gate.set()
        wait_until(lambda: sorted(box.get.acked) == mids)
        assert [r.ts for r in output.stored] == [100.0 + i for i in range(6)]
        wait_until(lambda: len(output.events) == 1)
        assert output.threads == {"edge-telemetry"}, "outputs never run on the runner thread"
    finally:
        output.gate.set()
        agent.stop()


def test_a_finished_write_wakes_the_runner_to_ack_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that sends no more until it gets acks (a small in-flight window) must not
    wait for the runner's idle timer: the write's end releases the acks. The timer is made
    30 s here, so only the wake-up can ack within the test's time."""
    monkeypatch.setattr(runner, "IDLE_WAIT", 30.0)
    output = HeldOutput()
    agent, box = agent_with(output, tmp_path, tick_interval=60.0)
    agent.start()
    try:
        output.gate.clear()
        mids = [box.get.push(PUMP, pump_payload(100.0 + i)) for i in range(5)]
        wait_until(lambda: agent.stats()["readings"] == 5)
        time.sleep(0.2)  # the runner is now asleep on its 30 s timer
        assert box.get.acked == []
        output.gate.set()
        wait_until(lambda: sorted(box.get.acked) == mids, timeout=10.0)
    finally:
        output.gate.set()
        agent.stop()


def test_stop_writes_the_queued_readings_then_acks_them(tmp_path: Path) -> None:
    output = HeldOutput()
    agent, box = agent_with(output, tmp_path)
    agent.start()
    mids = [box.get.push(PUMP, pump_payload(100.0 + i)) for i in range(30)]
    wait_until(lambda: agent.stats()["readings"] == 30)
    assert box.get.acked == []
    threading.Timer(0.2, output.gate.set).start()
    agent.stop()
    assert len(output.stored) == 30
    assert sorted(box.get.acked) == mids


class DownOutput(HeldOutput):
    def write(self, readings: Sequence[Reading]) -> None:
        raise ConnectionError("tsdb down")


def test_a_burst_whose_write_failed_is_acked_once_spooled(tmp_path: Path) -> None:
    output = DownOutput()
    agent, box = agent_with(output, tmp_path)
    agent.start()
    try:
        mids = [box.get.push(PUMP, pump_payload(100.0 + i)) for i in range(5)]
        wait_until(lambda: sorted(box.get.acked) == mids)
        assert agent.stats()["telemetry_spooled"] == 5
        assert agent.outbox.depth(TELEMETRY) >= 1
    finally:
        agent.stop()
