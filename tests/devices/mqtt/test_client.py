"""The listener's short PUBLISH path (:mod:`hygeia.devices.mqtt.client`) reads every
packet it accepts exactly as paho's decoder does, and leaves the others to paho."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hygeia.devices.mqtt.client import LeanClient, decode_publish
from tests.devices.mqtt.broker import BROKER_HOST, BROKER_PORT, forget_session

NO_PROPERTIES = b"\x00"
USER_PROPERTY = b"\x0b\x26\x00\x01k\x00\x01v\x01\x00\x01x"  # length 11: user property k=v, ...


def publish_body(topic: bytes, payload: bytes, mid: int, qos: int,
                 properties: bytes = NO_PROPERTIES) -> bytes:
    """A PUBLISH packet after its fixed header (MQTT 5 section 3.3.2)."""
    packet_id = mid.to_bytes(2, "big") if qos else b""
    return len(topic).to_bytes(2, "big") + topic + packet_id + properties + payload


def paho_reads(command: int, body: bytes) -> tuple[str, bytes, int, int]:
    decoded = _packet.decode_publish(command, body, MQTTProtocolVersion.MQTTv5)
    return decoded.topic.decode(), bytes(decoded.payload), decoded.mid, decoded.qos


@given(topic=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    min_size=1, max_size=40),
       payload=st.binary(max_size=300), mid=st.integers(1, 0xFFFF), qos=st.sampled_from([0, 1]),
       flags=st.sampled_from([0, 0x01, 0x08, 0x09]))
def test_a_packet_without_properties_reads_as_paho_reads_it(
        topic: str, payload: bytes, mid: int, qos: int, flags: int) -> None:
    command = 0x30 | qos << 1 | flags
    body = publish_body(topic.encode(), payload, mid, qos)
    expected = paho_reads(command, body)
    assert decode_publish(command, body) == expected
    assert decode_publish(command, bytearray(body)) == decode_publish(command, body)


@pytest.mark.parametrize("command, body", [
    (0x32, publish_body(b"a/b", b"{}", 7, 1, USER_PROPERTY)),  # properties: paho's path
    (0x30, publish_body(b"a/b", b"{}", 0, 0, b"\x02\x23\x00")),  # a topic alias
    (0x34, publish_body(b"a/b", b"{}", 7, 2)),  # QoS 2
    (0x32, publish_body(b"", b"{}", 7, 1)),  # no topic
    (0x32, publish_body(b"a/\xff", b"{}", 7, 1)),  # not UTF-8
    (0x32, publish_body(b"a/b", b"{}", 0, 1)),  # QoS 1 without a packet id
    (0x32, b"\x00"),
    (0x32, b"\x00\x09a/b\x00\x07\x00"),  # the topic runs past the end
])
def test_other_packets_are_left_to_paho(command: int, body: bytes) -> None:
    assert decode_publish(command, body) is None


def test_every_truncated_packet_is_refused_or_read_as_paho_reads_it() -> None:
    body = publish_body("gw/dévice/obs".encode(), b'{"a": 1}', 513, 1)
    for end in range(len(body) + 1):
        decoded = decode_publish(0x32, body[:end])
        if decoded is not None:
            assert decoded == paho_reads(0x32, body[:end])


def test_a_real_broker_delivers_plain_messages_on_the_short_path_and_others_to_paho() -> None:
    topic = f"test-{uuid.uuid4().hex[:12]}/lean"
    short: list[tuple[str, bytes, int, int]] = []
    general: list[tuple[str, bytes]] = []
    both = threading.Semaphore(0)
    subscribed = threading.Event()
    client = LeanClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    client.on_delivery = lambda *delivered: (short.append(delivered), both.release())
    client.on_message = lambda c, u, message: (
        general.append((message.topic, message.payload)), both.release())
    client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, m, r, p: subscribed.set()
    client.connect(BROKER_HOST, BROKER_PORT)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect(BROKER_HOST, BROKER_PORT)
        publisher.loop_start()
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = ("gateway", "1")
        publisher.publish(topic, b"plain", qos=1).wait_for_publish(10)
        publisher.publish(topic, b"with a property", qos=1,
                          properties=properties).wait_for_publish(10)
        publisher.disconnect()
        publisher.loop_stop()
        assert both.acquire(timeout=10) and both.acquire(timeout=10)
        assert [(t, p, q) for t, p, _, q in short] == [(topic, b"plain", 1)]
        assert general == [(topic, b"with a property")]
        client.ack(short[0][2], 1)
    finally:
        client.disconnect()
        client.loop_stop()


def lean_session(client_id: str, topic: str, received: list[tuple[str, bytes, int, int]],
                 arrived: threading.Semaphore) -> LeanClient:
    """A LeanClient in a persistent session (as the listener's), subscribed to ``topic``."""
    subscribed = threading.Event()
    client = LeanClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
    client.on_delivery = lambda *delivered: (received.append(delivered), arrived.release())
    client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, m, r, p: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 60
    client.connect(BROKER_HOST, BROKER_PORT, clean_start=False, properties=properties)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def test_ack_all_acknowledges_exactly_the_messages_it_names() -> None:
    """The broker sends the unacknowledged messages again on reconnection: only those."""
    client_id, topic = f"test-{uuid.uuid4().hex[:12]}", f"test-{uuid.uuid4().hex[:12]}/acks"
    received: list[tuple[str, bytes, int, int]] = []
    arrived = threading.Semaphore(0)
    client = lean_session(client_id, topic, received, arrived)
    try:
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect(BROKER_HOST, BROKER_PORT)
        publisher.loop_start()
        for number in range(6):
            publisher.publish(topic, str(number).encode(), qos=1).wait_for_publish(10)
        publisher.disconnect()
        publisher.loop_stop()
        assert all(arrived.acquire(timeout=10) for _ in range(6))
        client.ack_all([mid for _, payload, mid, _ in received if payload in (b"0", b"2", b"5")])
        client.ack_all([])
        time.sleep(0.5)  # the PUBACKs reach the broker before the connection closes
    finally:
        client.disconnect()
        client.loop_stop()
    again: list[tuple[str, bytes, int, int]] = []
    client = lean_session(client_id, topic, again, arrived)
    try:
        assert all(arrived.acquire(timeout=10) for _ in range(3))
        assert not arrived.acquire(timeout=1)
        assert sorted(payload for _, payload, _, _ in again) == [b"1", b"3", b"4"]
    finally:
        client.disconnect()
        client.loop_stop()
        forget_session(client_id)
