"""The agent's MQTT input against a real Mosquitto: flow control with acks in bursts, keep
alive, the persistent session keeping what was not acknowledged, oversized messages."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from device_profiles.site import MqttConfig
from edge.metrics import Metrics
from edge.mqtt_input import InboundMessage, MqttInput
from tests.estate_stack import wait_until as shared_wait_until
from tests.servers import Mosquitto
from tests.servers_edge import Publisher

pytestmark = pytest.mark.integration


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    shared_wait_until(cond, timeout, "the MQTT input", interval=0.02)


class Collector:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.chunks = 0
        self._lock = threading.Lock()

    def one(self, message: InboundMessage) -> None:
        self.many([message])

    def many(self, messages: list[InboundMessage]) -> None:
        with self._lock:
            self.messages.extend(messages)
            self.chunks += 1

    def take(self) -> list[InboundMessage]:
        with self._lock:
            got, self.messages = self.messages, []
        return got


def make_input(
    broker: Mosquitto, site_id: str, sink: Collector, client_id: str, **kwargs: object
) -> MqttInput:
    return MqttInput(
        MqttConfig(url=broker.url, client_id=client_id), site_id=site_id, gateway_id="gw",
        sink=sink.one, sink_many=sink.many, metrics=Metrics(), **kwargs,  # type: ignore[arg-type]
    )


def test_the_receive_window_holds_until_acks_and_bursts_of_acks_move_thousands(
    broker: Mosquitto,
) -> None:
    site = f"t{uuid.uuid4().hex[:8]}"
    sink = Collector()
    inp = make_input(broker, site, sink, f"c-{site}", receive_maximum=50)
    inp.start()
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: inp.connected)
        time.sleep(0.2)  # the SUBACK
        for i in range(2000):
            pub.publish(f"gh/{site}/water_pump/p{i % 7}/telemetry", b'{"i": %d}' % i)
        pub.flush()
        time.sleep(0.5)
        got = sink.take()
        assert len(got) == 50  # nothing acknowledged yet: the broker stops at the window
        # (Mosquitto 2.0 stops enforcing the window once acks have come; not asserted)
        inp.ack_many(got)
        deadline = time.monotonic() + 30
        while len(got) < 2000 and time.monotonic() < deadline:
            burst = sink.take()
            assert inp.ack_many(burst) == len(burst)
            got += burst
            time.sleep(0.005)
        assert [int(m.payload[6:-1]) for m in got] == list(range(2000))  # all, in order
        assert all(m.qos == 1 and m.generation == inp.generation for m in got)
        assert sink.chunks < 2000  # delivered in chunks, not one call per message
    finally:
        pub.close()
        inp.stop()


def test_keepalive_pings_keep_an_idle_connection_up(broker: Mosquitto) -> None:
    site = f"t{uuid.uuid4().hex[:8]}"
    metrics = Metrics()
    inp = MqttInput(
        MqttConfig(url=broker.url), site_id=site, gateway_id=f"gw-{site}",
        sink=Collector().one, keepalive=1, metrics=metrics,
    )
    inp.start()
    try:
        wait_until(lambda: inp.connected)
        time.sleep(4.0)  # Mosquitto drops a client silent for 1.5 x keepalive
        assert inp.connected
        assert metrics.counter("mqtt_connects") == 1
        assert metrics.counter("mqtt_disconnects") == 0
    finally:
        inp.stop()


def test_what_was_not_acknowledged_comes_back_after_a_restart(broker: Mosquitto) -> None:
    site = f"t{uuid.uuid4().hex[:8]}"
    client_id = f"c-{site}"
    first = Collector()
    inp = make_input(broker, site, first, client_id)
    inp.start()
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: inp.connected)
        time.sleep(0.2)
        for i in range(10):
            pub.publish(f"gh/{site}/gate/g1/event", b"%d" % i)
        pub.flush()
        wait_until(lambda: len(first.messages) == 10)
        got = first.take()
        inp.ack_many(got[:6])
        time.sleep(0.3)  # let the acks go out before the clean stop
        inp.stop()
        second = Collector()
        again = make_input(broker, site, second, client_id)
        again.start()
        try:
            wait_until(lambda: len(second.messages) >= 4)
            time.sleep(0.3)
            assert again.session_present
            assert sorted(m.payload for m in second.messages) == [b"6", b"7", b"8", b"9"]
            # a message of the first connection cannot be acknowledged on this one
            assert again.ack(got[7]) is False
        finally:
            again.stop()
    finally:
        pub.close()


def test_an_oversized_message_is_delivered_cut_acknowledged_and_counted(
    broker: Mosquitto,
) -> None:
    site = f"t{uuid.uuid4().hex[:8]}"
    sink = Collector()
    inp = make_input(broker, site, sink, f"c-{site}", max_packet=1_000_000)
    inp.start()
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: inp.connected)
        time.sleep(0.2)
        topic = f"gh/{site}/water_pump/p1/telemetry"
        pub.publish(topic, b"{" + b"7" * 5_000_000)
        pub.publish(topic, b"{}")
        pub.flush()
        wait_until(lambda: len(sink.messages) == 2)
        big, small = sink.take()
        assert len(big.payload) == 1_000_000 and big.payload[:2] == b"{7"
        assert small.payload == b"{}"
        assert inp.oversized == 1
        assert inp.ack_many([big, small]) == 2
    finally:
        pub.close()
        inp.stop()


def test_an_unreachable_broker_is_retried_and_reported(broker: Mosquitto) -> None:
    metrics = Metrics()
    inp = MqttInput(
        MqttConfig(url="mqtt://127.0.0.1:9"), site_id="s", gateway_id="gw",
        sink=Collector().one, metrics=metrics,
    )
    inp.start()
    try:
        wait_until(lambda: metrics.counter("mqtt_connect_failures") >= 2)
        assert not inp.connected
        assert "cannot connect to 127.0.0.1:9" in inp.last_error
    finally:
        inp.stop()


def test_while_the_runner_is_full_the_socket_is_not_read_and_nothing_is_lost(
    broker: Mosquitto,
) -> None:
    site = f"t{uuid.uuid4().hex[:8]}"
    sink = Collector()
    metrics = Metrics()
    full = threading.Event()
    inp = MqttInput(
        MqttConfig(url=broker.url, client_id=f"c-{site}"), site_id=site, gateway_id="gw",
        sink=sink.one, sink_many=sink.many, keepalive=1, metrics=metrics, paused=full.is_set,
    )
    inp.start()
    pub = Publisher(broker.port)
    try:
        wait_until(lambda: inp.connected)
        time.sleep(0.3)
        full.set()
        time.sleep(0.2)
        for i in range(300):
            pub.publish(f"gh/{site}/gate/g1/event", b"%d" % i, qos=0 if i % 2 else 1)
        pub.flush()
        time.sleep(3.0)  # twice Mosquitto's timeout for a silent client at keepalive 1
        assert sink.messages == []
        assert metrics.counter("mqtt_read_pauses") == 1
        full.clear()
        wait_until(lambda: len(sink.messages) == 300)
        assert [int(m.payload) for m in sink.take()] == list(range(300))
        assert metrics.counter("mqtt_connects") == 1 and inp.connected
    finally:
        pub.close()
        inp.stop()
