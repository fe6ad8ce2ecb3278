"""Storing a reading: the device it came from, its Observations, nothing twice.

Within the caller's transaction (it never commits, like server/rest/write.py):

1. The gateway and the device of the topic are Devices found by identifier,
   created when absent: ``urn:hygeia:mqtt:gateway|{gateway}`` and
   ``urn:hygeia:mqtt:device|{gateway}/{device}`` (its ``parent`` the gateway).
2. Every other resource of the payload (Device, DeviceMetric, Patient) is
   created when absent: found by ``ifNoneExist``, else its first identifier,
   else by content (an id derived from the topic and the resource).
3. Each Observation is stored once: found by its first identifier, else by an
   id derived from the SHA-256 of topic and payload (and its entry's index).
   A QoS 1 redelivery therefore stores nothing.
4. An Observation without ``device`` gets the topic's Device; without
   ``subject``, the patient the device was associated with when it measured
   (DeviceUseStatement, :mod:`hygeia.devices.registry`), if any.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from hygeia.devices.mqtt.payloads import Part, Reading
from hygeia.devices.registry import (
    Association,
    associations,
    ensure_device,
    identifier_criteria,
)
from hygeia.fhir.datetime import fhir_datetime_range, now_us
from hygeia.fhir.outcome import BadRequest, PreconditionFailed
from hygeia.fhir.references import is_conditional_reference, rewrite_references
from hygeia.fhir.resources import new_id
from hygeia.server.rest import write
from hygeia.store import Session

DEVICE_SYSTEM = "urn:hygeia:mqtt:device"
GATEWAY_SYSTEM = "urn:hygeia:mqtt:gateway"
MAX_KNOWN = 100_000  # device ids a listener remembers (forgets them all beyond)


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing a reading did: Observations created, and those already stored."""

    device_id: str
    created: int
    replayed: int


@dataclass(slots=True)
class Seen:
    """What one transaction has read already, for the readings after it (a listener
    stores a batch of readings in one transaction): the devices checked to still carry
    their topic's identifier, and the associations of each device. Valid for that
    transaction only (readings write neither Device identifiers nor associations).

    Each read also writes the batch's buffered versions first when it is a search, so
    on PostgreSQL one search per reading made every reading a flush of its own
    (measured: 75% of storing a reading)."""

    carried: set[str] = field(default_factory=set)
    associations: dict[str, list[Association]] = field(default_factory=dict)
    # (type, id) -> stored or not, for the keys :func:`prefetch` locked and read for
    # the whole batch at once (on PostgreSQL a lock and a read per reading, one round
    # trip each, were three quarters of storing a batch)
    stored: dict[tuple[str, str], bool] = field(default_factory=dict)


def prefetch(session: Session, readings: list[Reading], seen: Seen) -> None:
    """Lock the ids that the readings' parts without identifier are stored under (their
    key, :func:`_keyed_id`), and read which are stored, in two statements for all: what
    :func:`_target` would do for each, one at a time."""
    keys = list(dict.fromkeys(
        (part.resource["resourceType"], _keyed_id(reading, index, part))
        for reading in readings for index, part in enumerate(reading.parts)
        if _criteria(part) is None))
    if not keys:
        return
    session.lock_all(f"{resource_type}/{id}" for resource_type, id in keys)
    heads = session.heads(keys)
    seen.stored.update((key, key in heads) for key in keys)


def ensure_gateway(session: Session, gateway: str) -> str:
    """The id of the gateway's Device (created when absent)."""
    return ensure_device(session, GATEWAY_SYSTEM, gateway,
                         {"deviceName": [{"name": gateway, "type": "user-friendly-name"}],
                          "type": {"text": "MQTT gateway"}})


def ensure_topic_device(session: Session, gateway: str, device: str,
                        known: dict[str, str] | None = None, seen: Seen | None = None) -> str:
    """The id of the Device that publishes on ``{gateway}/{device}`` (created when absent).

    ``known`` remembers the ids found before (a listener keeps one): two identifier
    searches are most of the cost of storing a reading, and a device sends thousands.
    A remembered id is used only while that Device still carries the identifier.
    """
    value = f"{gateway}/{device}"
    remembered = (known or {}).get(value)
    if remembered is not None and seen is not None and remembered in seen.carried:
        return remembered
    if remembered is not None and _carries(session, remembered, value):
        if seen is not None:
            seen.carried.add(remembered)
        return remembered
    gateway_id = ensure_gateway(session, gateway)
    device_id = ensure_device(session, DEVICE_SYSTEM, value,
                              {"deviceName": [{"name": device, "type": "user-friendly-name"}],
                               "parent": {"reference": f"Device/{gateway_id}"}})
    if known is not None:
        if len(known) >= MAX_KNOWN:
            known.clear()
        known[value] = device_id
    return device_id


def _carries(session: Session, device_id: str, value: str) -> bool:
    current = session.current("Device", device_id)
    if current is None or current.deleted:
        return False
    return {"system": DEVICE_SYSTEM, "value": value} in \
        [{"system": i.get("system"), "value": i.get("value")}
         for i in orjson.loads(current.content or b"{}").get("identifier") or []]


def store_reading(session: Session, reading: Reading,
                  known: dict[str, str] | None = None, seen: Seen | None = None,
                  *, once: bool = False) -> Stored:
    """Store ``reading`` in ``session`` (see the module docstring); never commits.
    ``known``: device ids found before (:func:`ensure_topic_device`); ``seen``: what
    this transaction read for the readings before (:class:`Seen`).

    Storing stamps and rewrites the reading's resources, so it stores copies, and the
    same reading can be stored again after a rollback. ``once``: the caller never
    stores this reading again (a retry parses the payload anew), so its resources are
    stored as they are, without copying them first."""
    device_id = ensure_topic_device(session, reading.gateway, reading.device, known, seen)
    targets = [_target(session, reading, index, part, seen)
               for index, part in enumerate(reading.parts)]
    mapping = {part.full_url: f"{part.resource['resourceType']}/{id}"
               for part, (id, _) in zip(reading.parts, targets, strict=True) if part.full_url}
    resolve = _resolver(session, mapping)
    created = replayed = 0
    for part, (id, exists) in zip(reading.parts, targets, strict=True):
        is_observation = part.resource["resourceType"] == "Observation"
        if exists:
            replayed += is_observation
            continue
        resource = part.resource if once else orjson.loads(orjson.dumps(part.resource))
        if mapping or reading.conditional:
            rewrite_references(resource, resolve)
        if is_observation:
            _attribute(session, resource, device_id, seen)
            created += 1
        write.create(session, resource["resourceType"], resource, id=id, validated=True)
        if seen is not None:
            seen.stored[(resource["resourceType"], id)] = True  # a copy later in the batch
    return Stored(device_id, created, replayed)


def _target(session: Session, reading: Reading, index: int, part: Part,
            seen: Seen | None = None) -> tuple[str, bool]:
    """(the id the part is stored under, whether it is stored already)."""
    resource_type = part.resource["resourceType"]
    criteria = _criteria(part)
    if criteria:
        found = write.resolve_criteria(session, resource_type, criteria, lock=True).id
        return (found, True) if found else (new_id(), False)
    id = _keyed_id(reading, index, part)
    known = seen.stored.get((resource_type, id)) if seen is not None else None
    if known is not None:  # locked and read by prefetch
        return id, known
    session.lock(f"{resource_type}/{id}")
    current = session.current(resource_type, id)
    return id, current is not None


def _criteria(part: Part) -> str | None:
    """What finds the part's resource when stored: ``ifNoneExist`` (not for an
    Observation), else its first identifier; None when neither says."""
    resource_type = part.resource["resourceType"]
    criteria = part.if_none_exist if resource_type != "Observation" else None
    return criteria or _identifier_criteria(part.resource)


def _keyed_id(reading: Reading, index: int, part: Part) -> str:
    """The id of a part found by neither criteria nor identifier."""
    if part.resource["resourceType"] == "Observation":  # the message's own key, one per entry
        return reading.key if len(reading.parts) == 1 else \
            hashlib.sha256(f"{reading.key}#{index}".encode()).hexdigest()
    # a description without identifier: the same description is the same resource
    return hashlib.sha256(reading.topic.encode() + b"\0" +
                          orjson.dumps(part.resource, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _identifier_criteria(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier") or []:
        value = identifier.get("value")
        if value:
            system = identifier.get("system")
            return identifier_criteria(system, value)
    return None


def _resolver(session: Session, mapping: dict[str, str]) -> Any:
    def resolve(reference: str) -> str | None:
        if reference in mapping:
            return mapping[reference]
        if not is_conditional_reference(reference):
            return None
        resource_type, _, criteria = reference.partition("?")
        found = write.resolve_criteria(session, resource_type, criteria).id
        if found is None:
            raise PreconditionFailed(f"The conditional reference '{reference}' matches no "
                                     "resource.", expression="reference")
        return f"{resource_type}/{found}"

    return resolve


def _attribute(session: Session, observation: dict[str, Any], device_id: str,
               seen: Seen | None = None) -> None:
    """Fill ``device`` from the topic and ``subject`` from the device's association."""
    if "device" not in observation:
        observation["device"] = {"reference": f"Device/{device_id}"}
    if "subject" in observation:
        return
    reference = observation["device"].get("reference", "")
    measuring = reference[len("Device/"):] if reference.startswith("Device/") else device_id
    moment: int | None = None  # parsed only for a device with associations (most have none)
    for candidate in dict.fromkeys((measuring, device_id)):
        found = _associations(session, candidate, seen)
        if not found:
            continue
        moment = _measured_at(observation) if moment is None else moment
        patient = next((a.patient for a in found if a.covers(moment)), None)
        if patient is not None:
            observation["subject"] = {"reference": patient}
            return


def _associations(session: Session, device_id: str, seen: Seen | None) -> list[Association]:
    """:func:`~hygeia.devices.registry.associations`, read once per transaction when
    ``seen`` keeps them."""
    if seen is None:
        return associations(session, device_id)
    found = seen.associations.get(device_id)
    if found is None:
        found = seen.associations[device_id] = associations(session, device_id)
    return found


def _measured_at(observation: dict[str, Any]) -> int:
    """When it was measured (effective[x]; else now), in microseconds."""
    moment = observation.get("effectiveDateTime") or observation.get("effectiveInstant") or \
        (observation.get("effectivePeriod") or {}).get("start")
    if isinstance(moment, str):
        try:
            return fhir_datetime_range(moment)[0]
        except BadRequest:
            pass
    return now_us()
