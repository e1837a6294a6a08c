"""The MQTT input: one paho-mqtt client per agent, persistent session, QoS 1, manual acks.

Promises:

* a fixed client id (``mqtt.client_id`` or ``gatehouse-edge-{gateway_id}``), MQTT 5 with
  ``clean_start=False`` and a session expiry (or MQTT 3.1.1 with ``clean_session=False``
  when ``mqtt.protocol`` is ``v311``), so what devices publish while the agent is down is
  queued by the broker and delivered when it returns;
* ``manual_ack``: a QoS 1 message is acknowledged only when the runner calls :meth:`ack`,
  after the message's effects are durable. A message received on an earlier connection is
  never acknowledged on a later one (its packet id means something else there); the broker
  redelivers it and the pipeline's idempotence (stable event ids) absorbs the repeat;
* ``Receive Maximum`` bounds how many unacknowledged messages the broker sends, which is
  the back-pressure when the agent cannot make progress (disk full);
* TLS (``mqtts://``, CA, client certificate) and username/password from a file or
  ``GATEHOUSE_MQTT_PASSWORD``; the password is never logged;
* reconnection with backoff, forever; the first connection may fail without failing start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from device_profiles.site import MqttConfig
from edge.metrics import Metrics
from edge.topics import site_subscription

log = logging.getLogger(__name__)

PASSWORD_ENV = "GATEHOUSE_MQTT_PASSWORD"


class MqttConfigError(ValueError):
    """The ``mqtt`` section cannot work (bad URL, unreadable secret file...)."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One received message, tagged with the connection it arrived on."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received: float


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; anything else is a config error."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
        raise MqttConfigError(f"mqtt.url must be mqtt://host:port or mqtts://host:port: {url!r}")
    tls = parsed.scheme == "mqtts"
    try:
        port = parsed.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise MqttConfigError(f"mqtt.url has a bad port: {url!r}") from exc
    return BrokerAddress(parsed.hostname, port, tls)


def read_password(config: MqttConfig) -> str | None:
    """The broker password from ``password_file`` or the environment (never from logs)."""
    if config.password_file:
        try:
            return Path(config.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MqttConfigError(
                f"mqtt.password_file {config.password_file}: cannot read: {exc.strerror}"
            ) from exc
    return os.environ.get(PASSWORD_ENV)


class MqttInput:
    """Subscribes to the site's topics and hands every message to ``sink``."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        site_id: str,
        gateway_id: str,
        sink: Callable[[InboundMessage], None],
        receive_maximum: int = 1000,
        keepalive: int = 30,
        metrics: Metrics | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        if not 1 <= receive_maximum <= 65535:
            raise MqttConfigError(f"receive_maximum must be in 1..65535, got {receive_maximum}")
        self._address = parse_broker_url(config.url)
        self._config = config
        self._sink = sink
        self._metrics = metrics or Metrics()
        self._topic = site_subscription(site_id, config.shared_group)
        self._keepalive = keepalive
        self._receive_maximum = receive_maximum
        self.client_id = config.client_id or f"gatehouse-edge-{gateway_id}"
        self._v5 = getattr(config, "protocol", "v5") == "v5"
        if self._v5:
            self._client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
        else:
            self._client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311,
                clean_session=False, manual_ack=True,
            )
        if config.username:
            self._client.username_pw_set(config.username, read_password(config))
        if self._address.tls or config.ca_file or config.cert_file:
            for name in ("ca_file", "cert_file", "key_file"):
                value = getattr(config, name)
                if value and not Path(value).is_file():
                    raise MqttConfigError(f"mqtt.{name} {value}: no such file")
            self._client.tls_set(
                ca_certs=config.ca_file, certfile=config.cert_file, keyfile=config.key_file
            )
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._lock = threading.Lock()
        self._generation = 0
        self.connected = False
        self.last_error = "not connected yet"
        self.session_present = False
        self._stopping = False

    @property
    def generation(self) -> int:
        """Increases at every successful connection."""
        return self._generation

    def start(self) -> None:
        """Begin connecting in the background (returns at once, retries forever)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = int(self._config.session_expiry)
            props.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(
                self._address.host, self._address.port, keepalive=self._keepalive,
                clean_start=False, properties=props,
            )
        else:
            self._client.max_inflight_messages_set(self._receive_maximum)
            self._client.connect_async(
                self._address.host, self._address.port, keepalive=self._keepalive
            )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the session, with unacknowledged messages, stays on the broker)."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected = False

    def ack(self, message: InboundMessage) -> bool:
        """Acknowledge ``message`` if it came on the current connection; ``True`` if sent."""
        if message.qos == 0:
            return True
        with self._lock:
            if message.generation != self._generation or not self.connected:
                self._metrics.inc("mqtt_acks_skipped")
                return False
            self._client.ack(message.mid, message.qos)
        return True

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.connected = False
            self.last_error = f"broker refused the connection: {reason_code}"
            self._metrics.inc("mqtt_connect_failures")
            log.warning("mqtt: %s", self.last_error)
            return
        with self._lock:
            self._generation += 1
            self.connected = True
        self.session_present = bool(getattr(flags, "session_present", False))
        self.last_error = ""
        self._metrics.inc("mqtt_connects")
        if self._v5:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            client.subscribe(self._topic, options=SubscribeOptions(qos=self._config.qos))
        else:
            client.subscribe(self._topic, qos=self._config.qos)
        log.info(
            "mqtt: connected to %s:%d as %s (session present: %s), subscribed to %s",
            self._address.host, self._address.port, self.client_id, self.session_present,
            self._topic,
        )

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        with self._lock:
            was = self.connected
            self.connected = False
        if was and not self._stopping:
            self.last_error = f"disconnected: {reason_code}"
            self._metrics.inc("mqtt_disconnects")
            log.warning("mqtt: %s; reconnecting", self.last_error)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        self._sink(
            InboundMessage(
                topic=topic, payload=bytes(msg.payload), mid=int(msg.mid), qos=int(msg.qos),
                generation=self._generation, received=time.time(),
            )
        )
