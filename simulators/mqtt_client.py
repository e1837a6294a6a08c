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
