"""A lost broker connection: Hygeia reconnects, and what it had not acknowledged
comes back to it.

The connection is taken away the way a broker does it: another client connects
with Hygeia's client id (MQTT session takeover). That intruder holds the session
for a moment, receives the readings published meanwhile and acknowledges none
of them; when it leaves, Hygeia reconnects (backoff) and the broker delivers
those readings to it, unacknowledged as they are.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import BACKENDS, ServerProcess, backend_server
from tests.devices.mqtt.broker import (
    BROKER_HOST,
    BROKER_PORT,
    eventually,
    forget_session,
    mosquitto_pub,
)
from tests.devices.mqtt.conftest import mqtt_flags
from tests.devices.mqtt.test_listener import observation, observations_of


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str]]:
    client_id = f"hygeia-test-{uuid.uuid4().hex[:12]}"
    try:
        with backend_server(request, tmp_path_factory, "reconnect",
                            *mqtt_flags(client_id)) as process:
            yield process, client_id
    finally:
        forget_session(client_id)


class Intruder:
    """Connects as ``client_id`` keeping its session (and its expiry: a session ends
    with a connection that asks for no expiry); receives, acknowledges nothing, and
    never reconnects once it is pushed out."""

    def __init__(self, client_id: str) -> None:
        self.received: list[int] = []
        self.done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.on_message = lambda c, u, m: self.received.append(m.mid)
        self.client.on_disconnect = lambda c, u, f, r, p: self.done.set()
        expiry = Properties(PacketTypes.CONNECT)
        expiry.SessionExpiryInterval = 300
        self.client.connect(BROKER_HOST, BROKER_PORT, clean_start=False, properties=expiry)
        self.thread = threading.Thread(target=self._loop)
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.is_set():
            self.client.loop(0.05)

    def leave(self) -> None:
        """Disconnect without acknowledging: the broker keeps the messages inflight."""
        if not self.done.is_set():
            self.client.disconnect()
        self.done.set()
        self.thread.join(10)


def test_readings_unacknowledged_when_the_connection_was_lost_are_stored_after_it(
        server: tuple[ServerProcess, str], gateway: str) -> None:
    process, client_id = server
    topic = f"hygeia/{gateway}/monitor/obs"
    mosquitto_pub(topic, orjson.dumps(observation(1)))
    eventually(lambda: observations_of(process, gateway, "monitor"))
    intruder = Intruder(client_id)
    for value in (2, 3, 4):
        mosquitto_pub(topic, orjson.dumps(observation(value)))
    try:  # Hygeia takes its session back after its reconnection delay (1 s)
        eventually(lambda: intruder.received or intruder.done.is_set(), timeout=10)
    finally:
        intruder.leave()
    assert intruder.received, "the intruder got nothing: the test proved nothing"
    stored = eventually(lambda: len(observations_of(process, gateway, "monitor")) == 4,
                        timeout=60)
    assert stored
    time.sleep(0.3)
    values = sorted(o["valueQuantity"]["value"]
                    for o in observations_of(process, gateway, "monitor"))
    assert values == [1, 2, 3, 4]
