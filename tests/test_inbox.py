"""The queue between the MQTT thread and the runner."""

from __future__ import annotations

import threading
import time

from edge.inbox import Inbox


def test_chunks_in_bursts_out_in_order() -> None:
    inbox: Inbox[int] = Inbox(100, lambda n: None)
    inbox.put_many(list(range(7)))
    inbox.put(7)
    assert inbox.take(5, 0) == [0, 1, 2, 3, 4]
    assert inbox.take(5, 0) == [5, 6, 7]
    assert inbox.take(5, 0) == []


def test_what_does_not_fit_is_counted_not_kept() -> None:
    dropped: list[int] = []
    inbox: Inbox[int] = Inbox(10, dropped.append)
    inbox.put_many(list(range(8)))
    inbox.put_many(list(range(8, 16)))
    assert inbox.qsize() == 10 and dropped == [6]
    assert inbox.take(100, 0) == list(range(10))


def test_saturation_has_hysteresis() -> None:
    inbox: Inbox[int] = Inbox(100, lambda n: None)
    inbox.put_many(list(range(74)))
    assert not inbox.saturated()
    inbox.put(74)
    assert inbox.saturated()  # 75 of 100
    inbox.take(20, 0)
    assert inbox.saturated()  # 55: still above half
    inbox.take(5, 0)
    assert not inbox.saturated()  # 50
    inbox.put(1)
    assert not inbox.saturated()


def test_take_waits_for_the_first_item_only_up_to_the_timeout() -> None:
    inbox: Inbox[int] = Inbox(10, lambda n: None)
    t0 = time.monotonic()
    assert inbox.take(5, 0.05) == []
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, lambda: inbox.put_many([1, 2])).start()
    assert inbox.take(5, 5.0) == [1, 2]


def test_a_wake_ends_the_wait_even_with_nothing_to_take() -> None:
    inbox: Inbox[int] = Inbox(100, lambda n: None)
    threading.Timer(0.05, inbox.wake).start()
    started = time.monotonic()
    assert inbox.take(10, 30.0) == []
    assert time.monotonic() - started < 10.0, "the wake did not end a 30 s wait"


def test_a_wake_before_the_wait_is_not_lost() -> None:
    inbox: Inbox[int] = Inbox(100, lambda n: None)
    inbox.wake()
    started = time.monotonic()
    assert inbox.take(10, 30.0) == []
    assert time.monotonic() - started < 10.0
    inbox.put(1)
    assert inbox.take(10, 30.0) == [1]  # the wake was used up; items still come


def test_quiet_for_counts_from_the_last_arrival_once_everything_is_taken() -> None:
    inbox: Inbox[int] = Inbox(100, lambda n: None)
    assert inbox.quiet_for() == float("inf")  # nothing ever arrived
    inbox.put_many([1, 2])
    assert inbox.quiet_for() == 0.0  # waiting to be taken
    inbox.take(10, 0)
    time.sleep(0.02)
    assert inbox.quiet_for() >= 0.02
