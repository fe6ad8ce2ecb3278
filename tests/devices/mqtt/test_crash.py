"""kill -9 of the server while a gateway publishes: no acknowledged message is lost.

The server acknowledges a message to the broker only after its data committed,
in a persistent session: what it had not acknowledged when it died, and what
the gateway published while it was down, the broker delivers to the restarted
server. Every message the broker accepted is stored, exactly once.
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

from tests.conftest import BACKENDS, ServerProcess, backend_server
from tests.devices.mqtt.broker import BROKER_HOST, BROKER_PORT, eventually, forget_session
from tests.devices.mqtt.conftest import device_of, mqtt_flags, search
from tests.devices.mqtt.test_listener import observation

MESSAGES = 400  # below Mosquitto's default queue of 1000 messages per session


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


def count_of(server: ServerProcess, gateway: str) -> int:
    device = device_of(server.client, gateway, "monitor")
    if device is None:
        return 0
    response = server.client.get(f"Observation?device=Device/{device['id']}&_summary=count")
    return int(response.json()["total"])


@pytest.fixture
def publisher() -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(BROKER_HOST, BROKER_PORT)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def test_kill_9_while_publishing_loses_no_acknowledged_message(
        backend: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        publisher: mqtt.Client, gateway: str) -> None:
    client_id = f"hygeia-test-{uuid.uuid4().hex[:12]}"
    flags = mqtt_flags(client_id)
    topic = f"hygeia/{gateway}/monitor/obs"
    accepted: list[int] = []

    def publish_all() -> None:
        for value in range(MESSAGES):
            info = publisher.publish(topic, orjson.dumps(observation(value)), qos=1)
            info.wait_for_publish(10)  # the broker's PUBACK: it is the broker's now
            accepted.append(value)
            time.sleep(0.003)

    try:
        with backend_server(backend, tmp_path_factory, "crash", *flags) as first:
            sending = threading.Thread(target=publish_all)
            sending.start()
            eventually(lambda: count_of(first, gateway) >= 50)
            first.kill()  # SIGKILL, mid-stream
            assert len(accepted) < MESSAGES, "publish more: the server saw them all"
            sending.join(60)
            assert len(accepted) == MESSAGES
            second = ServerProcess(first.db_url, *flags)
            try:
                eventually(lambda: count_of(second, gateway) >= MESSAGES, timeout=90)
                time.sleep(0.5)  # a duplicate would show up now
                device = device_of(second.client, gateway, "monitor")
                assert device is not None
                stored = search(second.client,
                                f"Observation?device=Device/{device['id']}&_count=1000")
            finally:
                second.stop()
    finally:
        forget_session(client_id)
    values = sorted(o["valueQuantity"]["value"] for o in stored)
    assert values == list(range(MESSAGES))
