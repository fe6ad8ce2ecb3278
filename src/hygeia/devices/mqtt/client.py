"""The listener's paho client, with a short path for the PUBLISH packets it receives.

paho decodes every MQTT 5 PUBLISH into an ``MQTTMessage`` with a ``Properties``
object (built from two dictionaries of every property name, then cleared name by
name), and looks its topic up in a filter tree before calling ``on_message``:
measured, 60% of the network thread's CPU and 13% of the server's when it stores
gateway readings. The thread holds the GIL meanwhile, so that is CPU the storing
thread waits for.

:class:`LeanClient` decodes the common packet itself: QoS 0 or 1, a UTF-8 topic,
no properties (a gateway sets none; a topic alias needs one), and hands the topic,
payload, packet id and QoS straight to :attr:`LeanClient.on_delivery`. Every other
packet (QoS 2, properties present, anything malformed) takes paho's own path to
``on_message`` unchanged, so what a packet means never depends on the path.

:meth:`LeanClient.ack_all` acknowledges a batch in one write: paho's ``ack`` queues
one packet per message, and its network thread sends each with a system call of its
own (4 bytes each, hundreds after each commit).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

# (topic, payload, packet id, QoS) of a received PUBLISH
Delivered = Callable[[str, bytes, int, int], None]
# a PUBACK with reason "success": packet type 4, remaining length 2, the packet id
PUBACK = struct.Struct("!BBH")


def decode_publish(command: int, packet: bytes | bytearray
                   ) -> tuple[str, bytes, int, int] | None:
    """(topic, payload, packet id, QoS) of an MQTT 5 PUBLISH without properties;
    None for any other packet (paho's decoder then reads it, and raises for a
    malformed one).

    ``command`` is the fixed header's first byte, ``packet`` what follows the
    remaining length (MQTT 5 section 3.3): topic length and topic, packet id
    (QoS 1 and 2), property length (a single 0 byte when there are none), payload.

    >>> decode_publish(0x32, b"\\x00\\x03a/b\\x00\\x07\\x00{}")
    ('a/b', b'{}', 7, 1)
    """
    qos = (command & 0x06) >> 1
    if qos > 1 or len(packet) < 2:
        return None
    start = 2 + int.from_bytes(packet[:2], "big")
    topic = packet[2:start]
    mid = 0
    if qos:
        mid = int.from_bytes(packet[start:start + 2], "big")
        start += 2
    if len(packet) <= start or packet[start] != 0 or not topic or (mid == 0 and qos):
        return None
    try:
        return topic.decode("utf-8"), bytes(packet[start + 1:]), mid, qos
    except UnicodeDecodeError:
        return None


class LeanClient(mqtt.Client):
    """A paho client (MQTT 5, manual acknowledgement) that hands the PUBLISH packets
    :func:`decode_publish` reads to :attr:`on_delivery`; paho reads the others and
    calls ``on_message``. Everything else (connection, keepalive, reconnection,
    acknowledgements, publishing) is paho's."""

    on_delivery: Delivered | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        delivered = self.on_delivery
        if delivered is not None and self._manual_ack and self._protocol == mqtt.MQTTv5:
            decoded = decode_publish(self._in_packet["command"], self._in_packet["packet"])
            if decoded is not None:
                with self._in_callback_mutex:  # as paho calls on_message
                    delivered(*decoded)
                return MQTTErrorCode.MQTT_ERR_SUCCESS  # acknowledged by hand, later
        return super()._handle_publish()

    def ack_all(self, mids: Sequence[int]) -> None:
        """PUBACK the QoS 1 messages ``mids`` (received with manual acknowledgement), all
        in one packet queued for the network thread: what ``ack`` of each does, in one
        write."""
        if mids and self._manual_ack:
            packets = b"".join(PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids)
            self._packet_queue(mqtt.PUBACK, packets, 0, 0)
