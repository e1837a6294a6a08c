"""The simulators' one MQTT client: URL parsing and a connected paho client.

Kept apart from the publishing loop so the estate publisher and the CSV replay open the
broker the same way (``mqtt://host:port`` or ``mqtts://host:port``, MQTT 5 or 3.1.1).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse


class BrokerError(RuntimeError):
    """The broker URL is invalid or the broker could not be reached."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; :class:`BrokerError` otherwise."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parsed.hostname:
        raise BrokerError(
            f"broker URL {url!r} must look like mqtt://host:port or mqtts://host:port"
        )
    tls = parsed.scheme in ("mqtts", "ssl")
    try:
        port = parsed.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise BrokerError(f"broker URL {url!r}: bad port") from exc
    return BrokerAddress(parsed.hostname, port, tls)


def connect_client(
    url: str,
    *,
    client_id_prefix: str,
    protocol: str = "v5",
    on_connect: Any = None,
    on_message: Any = None,
    max_inflight: int = 1000,
    timeout: float = 10.0,
) -> Any:
    """A paho client (callback API v2) connected to ``url`` with its network loop running.

    ``on_connect(client)`` runs after every (re)connection, in paho's network thread.
    Raise :class:`BrokerError` if the broker does not accept the connection in ``timeout``.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if protocol not in ("v5", "v311"):
        raise BrokerError(f"MQTT protocol must be 'v5' or 'v311', got {protocol!r}")
    addr = parse_broker_url(url)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{client_id_prefix}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5 if protocol == "v5" else mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    if addr.tls:
        client.tls_set()
    connected = threading.Event()
    refused: list[str] = []

    def _on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
            return
        if on_connect is not None:
            on_connect(c)
        connected.set()

    client.on_connect = _on_connect
    if on_message is not None:
        client.on_message = on_message
    try:
        client.connect(addr.host, addr.port, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"cannot connect to the broker at {url}: {exc}") from exc
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        reason = refused[0] if refused else "no answer"
        raise BrokerError(f"the broker at {url} did not accept the connection: {reason}")
    return client


class MqttLink:
    """A paho client driven from the caller's own thread (paho's external-loop interface).

    Why not ``loop_start()``: in threaded mode every ``publish`` also writes a wake-up byte
    to the network thread and the two threads fight over the GIL; at thousands of messages
    a second that doubled the cost of publishing. Here one thread publishes and calls
    :meth:`pump`, which reads, writes queued packets in bulk, keeps the connection alive and
    reconnects with a capped backoff (1 s doubling to 10 s) when the broker goes away.
    Not thread-safe: use it from one thread only.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id_prefix: str,
        protocol: str = "v5",
        on_connect: Any = None,
        on_message: Any = None,
        max_inflight: int = 1000,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        if protocol not in ("v5", "v311"):
            raise BrokerError(f"MQTT protocol must be 'v5' or 'v311', got {protocol!r}")
        self.url = url
        self.addr = parse_broker_url(url)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{client_id_prefix}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if protocol == "v5" else mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        if self.addr.tls:
            self.client.tls_set()
        self.client.on_socket_register_write = lambda *a: None
        self.client.on_socket_unregister_write = lambda *a: None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        if on_message is not None:
            self.client.on_message = on_message
        self._user_on_connect = on_connect
        self.connected = False
        self.refused: str | None = None
        self.reconnects = 0
        self._retry_at = 0.0
        self._backoff = 1.0
        self._last_misc = 0.0

    def _on_connect(self, c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)
            return
        self.connected = True
        self._backoff = 1.0
        if self._user_on_connect is not None:
            self._user_on_connect(c)

    def _on_disconnect(self, *args: Any) -> None:
        self.connected = False

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and wait for the broker's acknowledgement; :class:`BrokerError` if not."""
        import time

        try:
            self.client.connect(self.addr.host, self.addr.port, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"cannot connect to the broker at {self.url}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while not self.connected and self.refused is None and time.monotonic() < deadline:
            self.pump(0.05)
        if not self.connected:
            reason = self.refused or "no answer"
            raise BrokerError(f"the broker at {self.url} did not accept the connection: {reason}")

    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> Any:
        """Queue one message (sent by the next :meth:`pump`); returns paho's message info."""
        return self.client.publish(topic, payload, qos, retain)

    def pump(self, timeout: float = 0.0) -> None:
        """Do the network work that is due, waiting up to ``timeout`` for incoming data."""
        import select
        import time

        from paho.mqtt.enums import MQTTErrorCode

        now = time.monotonic()
        sock = self.client.socket()
        if sock is None or (not self.connected and self._retry_at > 0):
            # Disconnected: wait out the backoff, then try again.
            if now >= self._retry_at:
                self._reconnect(now)
            elif timeout > 0:
                time.sleep(min(timeout, self._retry_at - now))
            return
        try:
            wlist = [sock] if self.client.want_write() else []
            readable, _, _ = select.select([sock], wlist, [], timeout)
        except (OSError, ValueError):
            self._lost(now)
            return
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if readable:
            rc = self.client.loop_read()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.client.want_write():
            rc = self.client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and now - self._last_misc >= 1.0:
            self._last_misc = now
            rc = self.client.loop_misc()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._lost(now)

    def _lost(self, now: float) -> None:
        self.connected = False
        self._retry_at = now + self._backoff

    def _reconnect(self, now: float) -> None:
        self.reconnects += 1
        try:
            self.client.reconnect()
            self._retry_at = 0.0
        except OSError:
            self._backoff = min(10.0, self._backoff * 2)
            self._retry_at = now + self._backoff

    def flush(self, last: Any = None, timeout: float = 10.0) -> bool:
        """Pump until every queued packet is written (and ``last`` acknowledged, if given)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = not self.client.want_write() and (last is None or last.is_published())
            if done:
                return True
            if not self.connected and self.client.socket() is None:
                return False
            self.pump(0.05)
        return False

    def close(self) -> None:
        """Disconnect cleanly (sends DISCONNECT) and close the socket."""
        if self.client.socket() is not None:
            self.client.disconnect()
            self.flush(timeout=2.0)
        self.connected = False
