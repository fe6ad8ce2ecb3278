"""Talking to the shared Mosquitto broker (127.0.0.1:1883) as a real gateway would.

Publishing goes through the ``mosquitto_pub`` CLI (a peer we do not ship) or
paho; every test uses a gateway name of its own (a uuid), so parallel runs on
the one broker never see each other's messages, and :func:`forget` removes the
persistent session and retained statuses a test left on the broker.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 1883
BROKER_URL = f"mqtt://{BROKER_HOST}:{BROKER_PORT}"


def new_gateway() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def mosquitto_pub(topic: str, payload: str | bytes, *, retain: bool = False) -> None:
    """Publish once with QoS 1 through the mosquitto_pub CLI."""
    data = payload.encode() if isinstance(payload, str) else payload
    command = ["mosquitto_pub", "-h", BROKER_HOST, "-p", str(BROKER_PORT), "-q", "1",
               "-t", topic, "-s"]
    if retain:
        command.append("-r")
    subprocess.run(command, input=data, check=True, timeout=10)


def clear_retained(topic: str) -> None:
    """An empty retained message deletes the retained one (MQTT 3.3.1.3)."""
    subprocess.run(["mosquitto_pub", "-h", BROKER_HOST, "-p", str(BROKER_PORT), "-q", "1",
                    "-t", topic, "-r", "-n"], check=True, timeout=10)


def forget_session(client_id: str) -> None:
    """Connect once with a clean start: the broker drops the session and its queue."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.connect(BROKER_HOST, BROKER_PORT, clean_start=True)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


class Subscriber:
    """A paho client that collects the messages of one topic filter."""

    def __init__(self, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, m, r, p: self._ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect(BROKER_HOST, BROKER_PORT)
        self.client.loop_start()
        assert self._ready.wait(10), "the test's subscription was not confirmed"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def subscribed(topic: str) -> Iterator[Subscriber]:
    subscriber = Subscriber(topic)
    try:
        yield subscriber
    finally:
        subscriber.close()


def eventually(condition: Callable[[], object], timeout: float = 20.0) -> object:
    """Poll until ``condition()`` is truthy; its value, or an AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert value, f"not true within {timeout} s"
    return value
