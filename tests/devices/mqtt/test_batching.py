"""A burst of messages is stored in shared transactions (batches): what that must not
change.

The gateway publishes while Hygeia is stopped, so the broker queues the messages in
Hygeia's persistent session and delivers them all at once when it is back: they
reach the listener together and are stored many to a transaction. Among them are
replays (each reading published twice) and readings that fail inside the
transaction (a conditional reference matching nothing), which make their batch roll
back: every good reading must still be stored exactly once, and every bad one
reported on the error topic.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import BACKENDS, ServerProcess, backend_server
from tests.devices.mqtt.broker import (
    BROKER_HOST,
    BROKER_PORT,
    eventually,
    forget_session,
    mosquitto_pub,
    subscribed,
)
from tests.devices.mqtt.conftest import mqtt_flags
from tests.devices.mqtt.test_listener import observation, observations_of

READINGS = 120
BAD_EVERY = 15  # one failing reading after every 15 good ones


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


def failing_reading(number: int) -> dict[str, Any]:
    """Valid, so it is read and batched, but its subject matches no Patient: storing
    it raises inside the transaction."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(1000 + number, subject={
            "reference": f"Patient?identifier=urn:example:none%7C{uuid.uuid4().hex}"}),
         "request": {"method": "POST", "url": "Observation"}}]}


def burst(topic: str) -> int:
    """Publish every reading twice and the failing ones among them, with many in flight
    (as a paho gateway does); how many failing ones were published."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(BROKER_HOST, BROKER_PORT)
    client.loop_start()
    published: list[mqtt.MQTTMessageInfo] = []
    bad = 0
    try:
        for value in range(READINGS):
            payload = orjson.dumps(observation(value))
            published += [client.publish(topic, payload, qos=1) for _ in range(2)]
            if value % BAD_EVERY == BAD_EVERY - 1:
                published.append(client.publish(topic, orjson.dumps(failing_reading(value)),
                                                qos=1))
                bad += 1
        for info in published:  # the broker has them all (it queues them for Hygeia)
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    return bad


@pytest.fixture
def client_id() -> Iterator[str]:
    name = f"hygeia-test-{uuid.uuid4().hex[:12]}"
    yield name
    forget_session(name)


def test_a_burst_with_replays_and_failing_readings_stores_each_good_reading_once(
        backend: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        gateway: str, client_id: str) -> None:
    flags = mqtt_flags(client_id)
    topic = f"hygeia/{gateway}/monitor/obs"
    with backend_server(backend, tmp_path_factory, "batch", *flags) as first:
        mosquitto_pub(f"hygeia/{gateway}/probe/obs", orjson.dumps(observation(1)))
        eventually(lambda: observations_of(first, gateway, "probe"))  # session made
        first.stop()  # a clean stop: the broker keeps the session and queues for it
        with subscribed(f"hygeia/{gateway}/monitor/error") as errors:
            bad = burst(topic)
            second = ServerProcess(first.db_url, *flags)
            try:
                eventually(lambda: len(observations_of(second, gateway, "monitor"))
                           >= READINGS, timeout=60)
                eventually(lambda: len(errors.messages) >= bad, timeout=30)
                stored = observations_of(second, gateway, "monitor")
            finally:
                second.stop()
    assert sorted(o["valueQuantity"]["value"] for o in stored) == list(range(READINGS))
    assert len(errors.messages) == bad
    outcomes = [json.loads(payload) for _, payload in errors.messages]
    assert all("matches no resource" in outcome["issue"][0]["diagnostics"]
               for outcome in outcomes)
