"""The MQTT gateway: gateways publish readings to a broker; Hygeia stores them.

``hygeia serve --mqtt-url mqtt://HOST:PORT`` connects to the broker and
subscribes, with QoS 1 in a persistent session, to ``hygeia/+/+/obs``
(``hygeia/{gateway}/{device}/obs``; ``--mqtt-topic`` sets another filter) and
``hygeia/+/status``. Payloads (:mod:`.payloads`) are a FHIR Observation or a
PHD gateway's Bundle; they are stored once each (:mod:`.storing`), attributed to
the topic's Device and its patient, and acknowledged after commit
(:mod:`.listener`); gateway status is kept on the gateway's Device
(:mod:`.status`). docs/guide/devices-mqtt.md is the user's guide.
"""

from __future__ import annotations

import argparse
import functools
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.devices.mqtt.topics import DEFAULT_FILTER, TopicLayout
from hygeia.server.extensions import CliCommand, PillarHost

MAX_STORERS = 8  # --mqtt-storers at most (each holds a pooled connection in a transaction)

DEMO_GATEWAY = "demo-gateway"
DEMO_DEVICE = "pulse-oximeter"

# the listener install() registered on each host, for demo() (called after it)
_LISTENERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _broker_url(text: str) -> str:
    from hygeia.devices.mqtt.listener import BrokerAddress

    try:
        BrokerAddress.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _topic_filter(text: str) -> str:
    try:
        TopicLayout.from_filter(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _seconds(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text}: give whole seconds, 0 to 4294967295")
    return seconds


def _storers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_STORERS:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number, 1 to {MAX_STORERS}")
    return count


def serve_options(group: argparse._ArgumentGroup) -> None:
    """``--mqtt-url``, ``--mqtt-topic``, ``--mqtt-client-id``, ``--mqtt-session-expiry``
    and ``--mqtt-storers``."""
    group.add_argument("--mqtt-url", type=_broker_url, default=None, metavar="URL",
                       help="store what gateways publish to this MQTT broker, e.g. "
                            "mqtt://127.0.0.1:1883 (default: off)")
    group.add_argument("--mqtt-topic", type=_topic_filter, default=DEFAULT_FILTER,
                       metavar="FILTER", help="the observation topics, ending in +/+/obs "
                       f"(gateway, device) (default {DEFAULT_FILTER})")
    group.add_argument("--mqtt-client-id", default=None, metavar="ID",
                       help="the MQTT client id of Hygeia's persistent session (default: "
                            "one made for the database and kept in it)")
    group.add_argument("--mqtt-session-expiry", type=_seconds, default=7 * 24 * 3600,
                       metavar="SECONDS", help="how long the broker keeps Hygeia's session "
                       "and queues its messages while Hygeia is away (default 604800, a "
                       "week)")
    group.add_argument("--mqtt-storers", type=_storers, default=1, metavar="N",
                       help="threads storing batches of readings at once, at most the "
                       "database's concurrent writers (1 on SQLite) (default 1)")


def install(host: PillarHost, options: Mapping[str, Any]) -> None:
    """Register the MQTT listener when ``--mqtt-url`` is given."""
    if not options.get("mqtt_url"):
        return
    from hygeia.devices.mqtt.client_id import database_client_id
    from hygeia.devices.mqtt.listener import BrokerAddress, MqttListener
    from hygeia.devices.registry import ensure_parent_parameter

    fixed = options.get("mqtt_client_id")
    client_id = (lambda: str(fixed)) if fixed else functools.partial(database_client_id, host)
    listener = MqttListener(
        host, BrokerAddress.parse(str(options["mqtt_url"])),
        TopicLayout.from_filter(str(options.get("mqtt_topic") or DEFAULT_FILTER)),
        client_id, int(options.get("mqtt_session_expiry", 7 * 24 * 3600)),
        int(options.get("mqtt_storers") or 1))
    host.add_listener(listener)
    _LISTENERS[host] = listener
    ensure_parent_parameter(host)  # a gateway's devices, for its device-offline alerts


def commands() -> Sequence[CliCommand]:
    return []


def demo(host: PillarHost, fhir_base: str) -> list[str]:
    """With ``--mqtt-url``: a demo gateway Device, and a ``mosquitto_pub`` line to paste."""
    listener = _LISTENERS.get(host)
    if listener is None:
        return []
    from hygeia.devices.mqtt.storing import DEVICE_SYSTEM, ensure_topic_device

    with host.transaction() as session:
        device_id = ensure_topic_device(session, DEMO_GATEWAY, DEMO_DEVICE)
    layout, broker = listener.layout, listener.broker
    topic = f"{layout.prefix}{DEMO_GATEWAY}/{DEMO_DEVICE}/obs"
    reading = ('{"resourceType":"Observation","status":"final","code":{"coding":[{"system":'
               '"http://loinc.org","code":"59408-5","display":"Oxygen saturation"}]},'
               '"valueQuantity":{"value":97,"unit":"%","system":"http://unitsofmeasure.org",'
               '"code":"%"}}')
    return ["MQTT gateway (docs/guide/devices-mqtt.md): publish a reading, then search it:",
            f"  mosquitto_pub -h {broker.host} -p {broker.port} -q 1 -t '{topic}' "
            f"-m '{reading}'",
            f"  curl -s '{fhir_base}/Observation?device=Device/{device_id}'",
            f"  curl -s '{fhir_base}/Device?identifier={DEVICE_SYSTEM}%7C"
            f"{DEMO_GATEWAY}/{DEMO_DEVICE}'"]
