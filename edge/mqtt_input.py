"""The MQTT input: one connection per agent, persistent session, QoS 1, acks after durable.

The agent's own client (packets in :mod:`edge.mqtt_wire`, one I/O thread here) rather than
paho-mqtt: the agent only subscribes, and a general client's per-message work (a packet read
in several small reads, an MQTT 5 properties object, a message object, topic matching, a
callback) was 40 % of its CPU. This one cuts every message of a socket read in one pass and
hands the runner the whole chunk as a list; acknowledgements go out as one write per burst.

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

import contextlib
import itertools
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from device_profiles.site import MqttConfig
from edge.backoff import Backoff
from edge.metrics import Metrics
from edge.mqtt_wire import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PUBLISH,
    SUBACK,
    V5,
    V311,
    InboundMessage,
    PacketReader,
    ProtocolError,
    connect_packet,
    parse_connack,
    parse_suback,
    puback_packets,
    subscribe_packet,
)
from edge.topics import site_subscription

log = logging.getLogger(__name__)

PASSWORD_ENV = "GATEHOUSE_MQTT_PASSWORD"


class MqttConfigError(ValueError):
    """The ``mqtt`` section cannot work (bad URL, unreadable secret file...)."""


__all__ = ["InboundMessage", "MqttConfigError", "MqttInput", "parse_broker_url", "read_password"]

CONNECT_TIMEOUT = 10.0
"""Seconds for the TCP connection, the TLS handshake and the broker's CONNACK."""
READ_SIZE = 256 * 1024
MAX_PACKET = 16 * 1024 * 1024
"""Larger messages are not buffered whole (a camera frame is well under this)."""
KEEP_BYTES = 1024 * 1024
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
"""Linux's TCP_QUICKACK (not a lasting setting: it is set again after every read)."""
READ_BUDGET = 4 * 1024 * 1024
"""Bytes read in a row before queued acks and pings get their turn."""


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


_GENERATIONS = itertools.count(1)
"""Connection numbers, unique in the process: a message can only be acknowledged on the
connection it came on, even across inputs."""


class _Refused(Exception):
    """The broker answered CONNECT with a refusal."""


class MqttInput:
    """Subscribes to the site's topics and hands every message to the runner.

    ``sink_many`` (if given) receives each socket read's messages as one list; otherwise
    ``sink`` is called once per message. Both run on the I/O thread and must not block.
    While ``paused()`` says so (the runner's queue is full), the socket is not read: TCP
    pushes back on the broker, which keeps the messages, whatever its in-flight window does.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        site_id: str,
        gateway_id: str,
        sink: Callable[[InboundMessage], None],
        sink_many: Callable[[list[InboundMessage]], None] | None = None,
        receive_maximum: int = 1000,
        keepalive: int = 30,
        metrics: Metrics | None = None,
        max_packet: int = MAX_PACKET,
        paused: Callable[[], bool] | None = None,
    ) -> None:
        if not 1 <= receive_maximum <= 65535:
            raise MqttConfigError(f"receive_maximum must be in 1..65535, got {receive_maximum}")
        self._address = parse_broker_url(config.url)
        self._config = config
        self._sink = sink
        self._sink_many = sink_many
        self._metrics = metrics or Metrics()
        self._topic = site_subscription(site_id, config.shared_group)
        self._keepalive = keepalive
        self._receive_maximum = receive_maximum
        self.client_id = config.client_id or f"gatehouse-edge-{gateway_id}"
        self._version = V5 if getattr(config, "protocol", "v5") == "v5" else V311
        self._password = read_password(config) if config.username else None
        self._tls = self._tls_context(config)
        self._lock = threading.Lock()
        self._generation = 0
        self.connected = False
        self.last_error = "not connected yet"
        self.session_present = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(0.5, 30.0)
        # outgoing bytes: any thread appends under _out_lock and wakes the I/O thread
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self._writing = b""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._reader: PacketReader | None = None
        self._server_keepalive: int | None = None
        self._subscribe_id = 0
        self._max_packet = max_packet
        self._paused = paused
        self.oversized = 0
        """Messages larger than ``max_packet``: delivered cut to their first MiB (validation
        then rejects them as too large), acknowledged, never held whole in memory."""

    def _tls_context(self, config: MqttConfig) -> ssl.SSLContext | None:
        if not (self._address.tls or config.ca_file or config.cert_file):
            return None
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(config, name)
            if value and not Path(value).is_file():
                raise MqttConfigError(f"mqtt.{name} {value}: no such file")
        try:
            context = ssl.create_default_context(cafile=config.ca_file)
            if config.cert_file:
                context.load_cert_chain(config.cert_file, config.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise MqttConfigError(f"mqtt TLS files cannot be used: {exc}") from exc
        return context

    @property
    def generation(self) -> int:
        """Changes at every successful connection (increasing, unique in the process)."""
        return self._generation

    # ----------------------------------------------------------------- control

    def start(self) -> None:
        """Begin connecting in the background (returns at once, retries forever)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mqtt-input", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Disconnect cleanly (the session, with unacknowledged messages, stays on the broker)."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=CONNECT_TIMEOUT + 2)
        self.connected = False
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def ack(self, message: InboundMessage) -> bool:
        """Acknowledge ``message`` if it came on the current connection; ``True`` if sent."""
        return self.ack_many((message,)) == 1

    def ack_many(self, messages: Iterable[InboundMessage]) -> int:
        """Acknowledge a burst in one write; how many were acknowledged (QoS 0 count as done).

        A message received on an earlier connection is skipped (counted): its packet id
        means something else on this one, and the broker redelivers it anyway.
        """
        ids: list[int] = []
        done = 0
        skipped = 0
        with self._lock:
            current = self._generation if self.connected else -1
        for message in messages:
            if message.qos == 0:
                done += 1
            elif message.generation == current:
                ids.append(message.mid)
            else:
                skipped += 1
        if skipped:
            self._metrics.inc("mqtt_acks_skipped", float(skipped))
        if ids:
            self._send(puback_packets(ids))
        return done + len(ids)

    # ----------------------------------------------------------------- I/O thread

    def _send(self, data: bytes) -> None:
        with self._out_lock:
            was_empty = not self._out
            self._out += data
        if was_empty:
            self._wake()

    def _wake(self) -> None:
        # BlockingIOError: a wake-up is already pending; OSError: the input is closed
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sock = self._open()
            except (OSError, ssl.SSLError) as exc:
                self._failed(f"cannot connect to {self._address.host}:{self._address.port}: {exc}")
                continue
            try:
                self._session(sock)
            except _Refused as exc:
                self._failed(f"broker refused the connection: {exc}")
            except (OSError, ssl.SSLError, ProtocolError) as exc:
                self._lost(str(exc) or type(exc).__name__)
            finally:
                with self._lock:
                    self.connected = False
                with contextlib.suppress(OSError):
                    sock.close()

    def _failed(self, error: str) -> None:
        self.last_error = error
        self._metrics.inc("mqtt_connect_failures")
        delay = self._backoff.next_delay()
        if self._backoff.failures <= 3 or self._backoff.failures % 20 == 0:
            log.warning("mqtt: %s; retrying in %.1fs", error, delay)
        self._stopping.wait(delay)

    def _lost(self, error: str) -> None:
        with self._lock:
            was = self.connected
        if self._stopping.is_set():
            return
        if was:
            self.last_error = f"disconnected: {error}"
            self._metrics.inc("mqtt_disconnects")
            log.warning("mqtt: %s; reconnecting", self.last_error)
            self._stopping.wait(self._backoff.next_delay() / 4)
        else:
            self._failed(error)

    def _open(self) -> socket.socket:
        raw = socket.create_connection(
            (self._address.host, self._address.port), timeout=CONNECT_TIMEOUT
        )
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock: socket.socket = raw
            if self._tls is not None:
                sock = self._tls.wrap_socket(raw, server_hostname=self._address.host)
            sock.sendall(
                connect_packet(
                    self.client_id, version=self._version, keepalive=self._keepalive,
                    clean=False, username=self._config.username, password=self._password,
                    session_expiry=int(self._config.session_expiry),
                    receive_maximum=self._receive_maximum,
                )
            )
        except BaseException:
            raw.close()
            raise
        return sock

    def _session(self, sock: socket.socket) -> None:
        """One connection, from CONNECT sent to its end (raises why it ended)."""
        with self._out_lock:
            self._out.clear()  # acks of an earlier connection mean nothing on this one
        self._writing = b""
        self._server_keepalive = None
        reader = PacketReader(
            self._version, self._control, max_packet=self._max_packet,
            keep_bytes=min(KEEP_BYTES, self._max_packet),
        )
        self._reader = reader
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        registered = 0
        now = time.monotonic()
        connack_by = now + CONNECT_TIMEOUT
        last_sent = last_heard = now
        ping_at: float | None = None
        more = False
        was_paused = False
        try:
            while True:
                if self._stopping.is_set():
                    self._goodbye(sock)
                    return
                if self._flush(sock):
                    last_sent = time.monotonic()
                paused = self._paused is not None and self.connected and self._paused()
                if paused != was_paused:
                    if paused:
                        self._metrics.inc("mqtt_read_pauses")
                    else:  # what came meanwhile is still in the socket: nothing was missed
                        last_heard = time.monotonic()
                        ping_at = None
                    was_paused = paused
                want = (0 if paused else selectors.EVENT_READ) | (
                    selectors.EVENT_WRITE if self._writing else 0
                )
                if want != registered:
                    if not registered:
                        selector.register(sock, want)
                    elif not want:
                        selector.unregister(sock)
                    else:
                        selector.modify(sock, want)
                    registered = want
                keepalive = self._server_keepalive or self._keepalive
                if paused:
                    timeout = 0.05
                elif more:
                    timeout = 0.0
                else:
                    timeout = 1.0 if not keepalive else min(1.0, keepalive / 4)
                more = False
                ready = selector.select(timeout)
                # the runner may have filled up during the wait: then read nothing now
                filled = (not paused and self._paused is not None and self.connected
                          and self._paused())
                if not paused and not filled and (ready or timeout == 0.0):
                    got, more = self._read(sock, reader)
                    if got:
                        last_heard = time.monotonic()
                        ping_at = None
                for key, _ in ready:
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                now = time.monotonic()
                if not self.connected and now > connack_by:
                    raise ProtocolError(f"no CONNACK within {CONNECT_TIMEOUT:.0f} s")
                if not keepalive:
                    continue
                if paused:  # not reading: keep the broker from timing us out, judge nothing
                    if now - last_sent >= keepalive * 0.75:
                        self._send(PINGREQ_PACKET)
                    continue
                if ping_at is not None and now - ping_at > keepalive:
                    raise ProtocolError(f"no answer to a ping within {keepalive} s")
                quiet = now - last_sent >= keepalive * 0.75 or now - last_heard > keepalive
                if quiet and ping_at is None:
                    self._send(PINGREQ_PACKET)
                    ping_at = now
        finally:
            selector.close()

    def _read(self, sock: socket.socket, reader: PacketReader) -> tuple[bool, bool]:
        """Read what the socket has (up to ``READ_BUDGET`` bytes) and deliver it.

        ``(anything came, stopped at the budget)``: the budget lets acks and pings go out
        between reads when the broker never stops sending.
        """
        got = False
        budget = READ_BUDGET
        while budget > 0:
            try:
                chunk = sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return got, False
            if not chunk:
                raise ConnectionResetError("the broker closed the connection")
            if _QUICKACK is not None:
                # Acknowledge at the TCP level now: our PUBACKs wait for the burst to be
                # durable, and meanwhile a broker without TCP_NODELAY (Mosquitto's default)
                # holds its next small writes until its earlier ones are acknowledged, up to
                # the kernel's delayed-ACK timer (40-200 ms) per message.
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            got = True
            budget -= len(chunk)
            before = reader.oversized
            messages = reader.feed(chunk, time.time())
            if reader.oversized != before:
                self.oversized += reader.oversized - before
                self._metrics.inc("mqtt_oversized", float(reader.oversized - before))
            if messages:
                if self._sink_many is not None:
                    self._sink_many(messages)
                else:
                    for message in messages:
                        self._sink(message)
        return got, True

    def _flush(self, sock: socket.socket) -> bool:
        """Write what is queued without blocking; ``True`` if bytes went out."""
        if not self._writing:
            with self._out_lock:
                if not self._out:
                    return False
                self._writing = bytes(self._out)
                self._out.clear()
        try:
            sent = sock.send(self._writing)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return False
        self._writing = self._writing[sent:]
        return sent > 0

    def _goodbye(self, sock: socket.socket) -> None:
        """At stop: send the acks still queued and DISCONNECT, briefly blocking."""
        with contextlib.suppress(OSError, ssl.SSLError):
            with self._out_lock:
                rest = self._writing + bytes(self._out) + DISCONNECT_PACKET
                self._out.clear()
            self._writing = b""
            sock.settimeout(2.0)
            if self.connected:
                sock.sendall(rest)

    def _control(self, kind: int, flags: int, body: bytes) -> None:
        """Every packet but PUBLISH (runs inside :meth:`PacketReader.feed`)."""
        if kind == CONNACK:
            self._connack(body)
        elif kind == SUBACK:
            _, codes = parse_suback(body, self._version)
            refused = [c for c in codes if c >= 0x80]
            if refused:
                self.last_error = (
                    f"broker refused the subscription to {self._topic} (code {refused[0]:#04x})"
                )
                self._metrics.inc("mqtt_subscribe_refused")
                log.error("mqtt: %s: check the broker's ACL for this client", self.last_error)
        elif kind == DISCONNECT:
            reason = body[0] if body else 0
            raise ProtocolError(f"the broker sent DISCONNECT (reason {reason:#04x})")
        elif kind == PUBLISH:  # never: the reader keeps PUBLISH for itself
            raise ProtocolError("PUBLISH routed as a control packet")

    def _connack(self, body: bytes) -> None:
        if self.connected:
            raise ProtocolError("a second CONNACK on one connection")
        ack = parse_connack(body, self._version)
        if ack.refused:
            raise _Refused(ack.describe(self._version))
        with self._lock:
            self._generation = next(_GENERATIONS)
            self.connected = True
        if self._reader is not None:
            self._reader.generation = self._generation
        self._server_keepalive = ack.server_keepalive
        self._backoff.reset()
        self.session_present = ack.session_present
        self.last_error = ""
        self._metrics.inc("mqtt_connects")
        self._subscribe_id = self._subscribe_id % 65535 + 1
        self._send(
            subscribe_packet(
                self._subscribe_id, self._topic, self._config.qos, version=self._version
            )
        )
        log.info(
            "mqtt: connected to %s:%d as %s (MQTT %s, session present: %s), subscribing to %s",
            self._address.host, self._address.port, self.client_id,
            "5" if self._version == V5 else "3.1.1", self.session_present, self._topic,
        )
