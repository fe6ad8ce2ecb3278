"""Reading an MQTT payload: a FHIR Observation, or a Bundle as a PHD gateway sends it.

Everything about a payload that can be wrong is found here, before any
transaction begins: it is JSON, at most :data:`MAX_PAYLOAD_BYTES`, a valid
resource of an accepted shape. A payload refused here is reported on the error
topic and acknowledged (sending it again cannot succeed); one accepted here is
stored by :mod:`.storing`.

Accepted shapes:

- an ``Observation``;
- a ``Bundle`` of type ``transaction``, ``batch`` or ``collection`` holding
  Observations and the Device, DeviceMetric and Patient resources they
  reference, as the Personal Health Device IG (IEEE 11073 PHD -> FHIR) has a
  gateway send them: entries referring to each other by ``fullUrl``
  (``urn:uuid:...``), each other resource created only when absent (by its
  ``request.ifNoneExist``, else its first identifier), at most
  :data:`MAX_ENTRIES` entries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from hygeia.devices.mqtt.topics import TopicLayout
from hygeia.fhir.outcome import BadRequest, Issue, PayloadTooLarge, Unprocessable
from hygeia.fhir.validation import validate

MAX_PAYLOAD_BYTES = 256 * 1024  # a PHD upload is a few KB; see listener.RECEIVE_MAXIMUM
MAX_ENTRIES = 1000
ACCEPTED_TYPES = ("Observation", "Device", "DeviceMetric", "Patient")
BUNDLE_TYPES = ("transaction", "batch", "collection")


@dataclass(slots=True)
class Part:
    """One resource of a payload, with what says whether it is already stored."""

    resource: dict[str, Any]
    full_url: str | None = None
    if_none_exist: str | None = None
    where: str = ""  # "Observation" or "Bundle.entry[3].resource", for messages


@dataclass(slots=True)
class Reading:
    """One observation message, parsed and validated."""

    topic: str
    gateway: str
    device: str
    key: str  # SHA-256 (hex) of the topic and payload: the replay key without identifiers
    parts: list[Part] = field(default_factory=list)
    # False when the payload cannot hold a conditional reference (``Type?criteria``): no
    # "?" in it, not even escaped, so storing need not look for references to resolve
    conditional: bool = True


def message_key(topic: str, payload: bytes) -> str:
    """SHA-256 of topic and payload (a NUL between them: no topic contains one)."""
    return hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()


def may_refer_conditionally(payload: bytes) -> bool:
    """Whether the JSON ``payload`` may hold a string with a "?" in it: written as is,
    or escaped (``\\u003f``, the only other way JSON can write one).

    >>> may_refer_conditionally(b'{"reference": "Device/1"}')
    False
    """
    return b"?" in payload or b"\\u" in payload


def parse_reading(layout: TopicLayout, topic: str, payload: bytes) -> Reading:
    """The reading a message carries, or a FhirError saying what is wrong with it."""
    gateway, device = layout.observation_source(topic)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"The payload has {len(payload)} bytes; at most "
                              f"{MAX_PAYLOAD_BYTES} are accepted.", expression="payload")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The payload is not JSON: {error}.", code="structure",
                         expression="payload") from None
    reading = Reading(topic, gateway, device, message_key(topic, payload),
                      conditional=may_refer_conditionally(payload))
    kind = body.get("resourceType") if isinstance(body, dict) else None
    if kind == "Observation":
        _check(body, "Observation")
        reading.parts.append(Part(body, where="Observation"))
    elif kind == "Bundle":
        reading.parts.extend(_bundle_parts(body))
    else:
        raise BadRequest(f"The payload must be an Observation or a Bundle, not "
                         f"{kind or 'a JSON value without resourceType'}.",
                         expression="resourceType")
    return reading


def _check(resource: dict[str, Any], resource_type: str) -> None:
    issues = validate(resource, resource_type)
    if issues:
        raise Unprocessable(issues=[Issue("processing", f"The {resource_type} failed "
                                          f"validation with {len(issues)} issue"
                                          f"{'s' if len(issues) > 1 else ''}.",
                                          resource_type), *issues])


def _bundle_parts(bundle: dict[str, Any]) -> list[Part]:
    entries = bundle.get("entry")
    if isinstance(entries, list) and len(entries) > MAX_ENTRIES:
        raise PayloadTooLarge(f"The Bundle has {len(entries)} entries; at most {MAX_ENTRIES} "
                              "are accepted.", expression="Bundle.entry")
    _check(bundle, "Bundle")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise BadRequest(f"A Bundle of type {bundle.get('type')!r} is not a gateway upload: "
                         f"send one of type {', '.join(BUNDLE_TYPES)}.",
                         expression="Bundle.type")
    return [_part(index, entry) for index, entry in enumerate(entries or [])]


def _part(index: int, entry: dict[str, Any]) -> Part:
    where = f"Bundle.entry[{index}]"
    resource = entry.get("resource")
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if resource is None or kind not in ACCEPTED_TYPES:
        raise BadRequest(f"{where} holds {kind or 'no resource'}; a gateway may send "
                         f"{', '.join(ACCEPTED_TYPES)}.", expression=f"{where}.resource")
    request = entry.get("request") or {}
    if request and request.get("method") not in ("POST", "PUT"):
        raise BadRequest(f"{where}.request.method {request.get('method')} is not accepted "
                         "from a gateway: it may only create (POST, or PUT of a resource "
                         "that is created when absent).", expression=f"{where}.request.method")
    criteria = request.get("ifNoneExist") or _put_criteria(request, kind)
    return Part(resource, entry.get("fullUrl"), criteria, f"{where}.resource")


def _put_criteria(request: dict[str, Any], kind: str) -> str | None:
    """``PUT Device?identifier=...`` names the resource by its criteria, as ifNoneExist."""
    url = str(request.get("url") or "")
    if request.get("method") == "PUT" and url.startswith(f"{kind}?"):
        return url.partition("?")[2]
    return None
