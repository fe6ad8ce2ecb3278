"""The MQTT gateway listener: a broker connection that stores what gateways publish.

Durability, in order:

- One persistent session per database (MQTT 5 ``clean_start`` false, a stable
  client id, :mod:`.client_id`, and a session expiry interval,
  ``--mqtt-session-expiry``): while Hygeia is down or disconnected the broker
  queues the QoS 1 messages of its subscriptions and delivers them on
  reconnection. Past the expiry the broker forgets the session (and what it
  queued): the bound on what a broker keeps for a Hygeia that never returns.
- Messages are acknowledged by hand (paho ``manual_ack``): the PUBACK goes out
  only after the transaction holding the message's data has committed. A
  message whose PUBACK never left (a crash, a lost connection) is sent again by
  the broker, and storing is idempotent (:mod:`.storing`), so an acknowledged
  message is never lost and a redelivered one is never stored twice.
- A payload that can never be stored (not JSON, invalid FHIR, a conditional
  reference matching nothing) is logged, reported as a JSON OperationOutcome on
  ``hygeia/{gateway}/{device}/error``, and then acknowledged. Any other failure
  (the database unreachable) is retried with backoff, unacknowledged, until it
  succeeds or the server stops.

Threads: paho's network loop (``loop_start``; it reconnects with exponential
backoff, :data:`RECONNECT_DELAY`) decodes each message (a plain one in
:class:`~.client.LeanClient`, without paho's per-message objects) and hands it
to a queue; storing threads (one; ``--mqtt-storers``, at most the repository's
``concurrent_writers``: one on SQLite) each take a batch of everything waiting,
up to :data:`BATCH` messages, store it in one transaction (one commit for many
messages: the group commit), then acknowledge it in one write, falling back to
one transaction per message when a batch fails, so one bad message cannot block
the others. With several on PostgreSQL, while one batch waits for the server the
next runs its Python (ADR 0047: measured on a loaded machine, more CPU per
message and no clear gain, so one is the default). (Reading
and validating the payloads on the network thread instead was measured: more
CPU per message, from the two threads contending for the GIL, and no faster.)
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hygeia.devices.mqtt.client import LeanClient
from hygeia.devices.mqtt.payloads import Reading, parse_reading
from hygeia.devices.mqtt.status import parse_status, record_status
from hygeia.devices.mqtt.storing import Seen, prefetch, store_reading
from hygeia.devices.mqtt.topics import TopicLayout
from hygeia.fhir.outcome import FhirError
from hygeia.server.extensions import Host
from hygeia.store import Session

log = logging.getLogger("hygeia.devices.mqtt")

QOS = 1
# messages stored in one transaction at most: each commit costs a sync to disk and wakes
# every change-feed consumer of the server (NEWS2, alarms, subscriptions, ...), which
# then runs a transaction of its own, so fewer, larger commits leave more for storing
BATCH = 500
RECONNECT_DELAY = (1, 30)  # seconds: first retry, and the cap of the doubling backoff
RETRY_DELAY = (0.2, 10.0)  # a failed store: first retry, and the cap
CONNECT_WAIT = 10.0  # start() waits this long for the first subscription
KEEPALIVE = 30
# unacknowledged messages the broker may send at once (MQTT 5 Receive Maximum): twice a
# batch, so the next batch arrives while one commits. It bounds the inbox: at most this
# many payloads of payloads.MAX_PAYLOAD_BYTES (250 MiB), however many threads store them
RECEIVE_MAXIMUM = 2 * BATCH
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600  # seconds


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is: ``mqtt://[user[:password]@]host[:port]``."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        try:
            port = parts.port or 1883
        except ValueError:
            port = -1
        if parts.scheme != "mqtt" or not parts.hostname or port <= 0 or \
                parts.path not in ("", "/"):
            raise ValueError(f"'{url}' is not a broker URL: write it as mqtt://HOST[:PORT], "
                             "e.g. mqtt://127.0.0.1:1883 (mqtts is not supported)")
        return cls(parts.hostname, port, unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the network thread handed it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection it came on (its mid means nothing on another)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A message read: the step that stores it, and the reading (None for a status)."""

    step: Callable[[Session, Seen], object]
    reading: Reading | None = None


class MqttListener:
    """Subscribes to observation and status topics and stores what arrives."""

    name = "mqtt"

    def __init__(self, host: Host, broker: BrokerAddress, layout: TopicLayout,
                 client_id: Callable[[], str],
                 session_expiry: int = DEFAULT_SESSION_EXPIRY, storers: int = 1) -> None:
        self.host = host
        self.storers = max(1, min(storers, host.repository.concurrent_writers))
        self.session_expiry = session_expiry
        self.broker = broker
        self.layout = layout
        self._client_id = client_id
        # SimpleQueue: the network thread puts every message, and Queue's lock and
        # condition were a tenth of that thread's CPU
        self._inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._workers: list[threading.Thread] = []
        self._client: LeanClient | None = None
        self._known_devices: dict[str, str] = {}  # "{gateway}/{device}" -> Device id
        # connections so far: a message is acknowledged only on the connection it came
        # on. After a reconnection the broker sends it again (with a packet id it may by
        # then have given another message too), and that copy is acknowledged instead.
        self._connection = 0
        self._connection_lock = threading.Lock()

    # ------------------------------------------------------------- connection

    def start(self) -> None:
        client = LeanClient(CallbackAPIVersion.VERSION2, client_id=self._client_id(),
                            protocol=mqtt.MQTTv5, manual_ack=True)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        client.reconnect_delay_set(*RECONNECT_DELAY)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_connect_fail = self._not_connected
        client.on_subscribe = self._subscribed_to
        client.on_message = self._received
        client.on_delivery = self._deliver
        self._client = client
        self._workers = [
            threading.Thread(target=self._work, name=f"mqtt-store-{number}", daemon=True)
            for number in range(self.storers)]
        for worker in self._workers:
            worker.start()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE,
                             clean_start=False, properties=properties)
        client.loop_start()
        if not self._subscribed.wait(CONNECT_WAIT):
            log.warning("MQTT broker %s:%d not reached yet; retrying in the background",
                        self.broker.host, self.broker.port)

    def stop(self) -> None:
        self._stopping.set()
        for worker in self._workers:
            worker.join(30)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.broker.host,
                      self.broker.port, reason)
            return
        with self._connection_lock:
            self._connection += 1
        log.info("MQTT connected to %s:%d (session present: %s)", self.broker.host,
                 self.broker.port, flags.session_present)
        client.subscribe([(self.layout.observations, QOS), (self.layout.statuses, QOS)])

    def _not_connected(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning("MQTT broker %s:%d cannot be reached; retrying", self.broker.host,
                    self.broker.port)

    def _subscribed_to(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                       properties: Any) -> None:
        log.info("MQTT subscribed to %s and %s", self.layout.observations,
                 self.layout.statuses)
        self._subscribed.set()

    def _disconnected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                      properties: Any) -> None:
        with self._connection_lock:
            self._connection += 1
        if not self._stopping.is_set():
            log.warning("MQTT connection to %s:%d lost (%s); reconnecting",
                        self.broker.host, self.broker.port, reason)

    def _received(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A message paho decoded (see :mod:`.client` for the ones it does not)."""
        self._deliver(message.topic, bytes(message.payload), message.mid, message.qos)

    def _deliver(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        self._inbox.put(Delivery(topic, payload, mid, qos, self._connection))

    # ------------------------------------------------------------- storing

    def _work(self) -> None:
        """A storing thread's loop. It must outlive any one batch: if it stopped,
        every later message would wait unacknowledged until the server restarts.

        The threads share the inbox, so a message and its redelivery (after a
        reconnection) can be in two batches at once: each batch locks the keys it
        stores under before reading them (:func:`~.storing.prefetch`; SQLite's one
        writer runs one transaction at a time anyway), so the later one waits for
        the other's commit and then finds the reading stored."""
        while not self._stopping.is_set():
            batch = self._take()
            if not batch:
                continue
            try:
                self._handle(batch)
            except Exception:  # a defect; the batch stays unacknowledged, so the
                # broker sends it again after the next reconnect
                log.exception("MQTT batch of %d messages not handled", len(batch))

    def _take(self) -> list[Delivery]:
        try:
            batch = [self._inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        while len(batch) < BATCH:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _handle(self, batch: list[Delivery]) -> None:
        """Store a batch in one transaction; if that fails, each message on its own."""
        ready = [(delivery, prepared) for delivery in batch
                 if (prepared := self._prepare(delivery)) is not None]
        if not ready:
            return
        readings = [prepared.reading for _, prepared in ready if prepared.reading is not None]
        try:
            with self.host.transaction() as session:
                seen = Seen()  # what this transaction read, for the readings after
                prefetch(session, readings, seen)
                for _, prepared in ready:
                    prepared.step(session, seen)
        except Exception:
            for delivery, _ in ready:
                self._store_alone(delivery)
            return
        self._ack_all([delivery for delivery, _ in ready])

    def _prepare(self, delivery: Delivery) -> _Prepared | None:
        """What storing the message takes, or None when it was refused (reported, acked)."""
        try:
            if self.layout.is_status(delivery.topic):
                gateway = self.layout.status_gateway(delivery.topic)
                status = parse_status(delivery.payload)
                if status is None:
                    self._ack(delivery)
                    return None
                return _Prepared(lambda session, _: record_status(session, gateway, status))
            reading = parse_reading(self.layout, delivery.topic, delivery.payload)
        except FhirError as error:
            self._refuse(delivery, error)
            return None
        except Exception:  # a payload our parser could not read: reported, not lost
            log.exception("MQTT message on %s could not be read", delivery.topic)
            self._refuse(delivery, FhirError(
                "The payload could not be read as a FHIR Observation or Bundle.",
                code="processing"))
            return None
        # once: a reading is stored by one attempt only (a retry prepares the message
        # again), so its resources need no copy
        return _Prepared(lambda session, seen: store_reading(
            session, reading, self._known_devices, seen, once=True), reading)

    def _store_alone(self, delivery: Delivery) -> None:
        """One message in its own transaction, retried until it commits, is refused (a
        FhirError: the payload's fault) or the server stops (then left unacknowledged).
        Each attempt reads the message anew: an attempt changes the reading it stores."""
        delay = RETRY_DELAY[0]
        while True:
            prepared = self._prepare(delivery)
            if prepared is None:  # refused (and acknowledged) by _prepare
                return
            try:
                with self.host.transaction() as session:
                    prepared.step(session, Seen())
            except FhirError as error:
                self._refuse(delivery, error)
                return
            except Exception:
                log.exception("MQTT message on %s not stored; retrying in %.1f s",
                              delivery.topic, delay)
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, RETRY_DELAY[1])
                continue
            self._ack(delivery)
            return

    def _refuse(self, delivery: Delivery, error: FhirError) -> None:
        """Log, report on the error topic, acknowledge: sending it again cannot help."""
        log.warning("MQTT message on %s refused: %s", delivery.topic, error)
        topic = self._error_topic(delivery.topic)
        if topic is not None and self._client is not None:
            outcome = error.outcome()
            outcome["issue"].append({"severity": "information", "code": "informational",
                                     "diagnostics": f"received on {delivery.topic}"})
            self._client.publish(topic, orjson.dumps(outcome), qos=QOS)
        self._ack(delivery)

    def _error_topic(self, topic: str) -> str | None:
        if self.layout.is_status(topic):
            return None  # a gateway's status has no device to report to
        levels = topic[len(self.layout.prefix):].split("/")
        return self.layout.error_topic(levels[0], levels[1]) if len(levels) == 3 else None

    def _ack_all(self, deliveries: list[Delivery]) -> None:
        """:meth:`_ack` each, the QoS 1 ones in one write (:meth:`LeanClient.ack_all`)."""
        client = self._client
        if client is None:
            return
        with self._connection_lock:
            client.ack_all([delivery.mid for delivery in deliveries
                            if delivery.qos == 1 and delivery.connection == self._connection])
        for delivery in deliveries:
            if delivery.qos > 1:
                self._ack(delivery)

    def _ack(self, delivery: Delivery) -> None:
        if self._client is None or delivery.qos == 0:
            return
        with self._connection_lock:
            if delivery.connection == self._connection:
                self._client.ack(delivery.mid, delivery.qos)

