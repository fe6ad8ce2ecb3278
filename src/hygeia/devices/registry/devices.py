"""Device and DeviceMetric records: found by identifier, created once, their status kept.

A device is known by an identifier (``system|value``), never by the id a server
gave it, because the feeds that report it (an MQTT topic, an HL7 v2 ``OBX-18``)
only know the identifier. :func:`ensure_device` is race-safe: it locks the
identifier for the rest of the transaction, so two messages of a new device
arriving together create one Device.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from hygeia.devices.registry.statuses import DEVICE_STATUSES, METRIC_STATUSES
from hygeia.fhir.outcome import BadRequest
from hygeia.server.rest import write
from hygeia.store import Session, StoredVersion


def identifier_criteria(system: str | None, value: str) -> str:
    """The token search for one identifier, with the characters a token escapes escaped
    (without ``system``: that value in any system)."""
    token = f"{escape(system)}|{escape(value)}" if system else escape(value)
    return "identifier=" + quote(token, safe="")


def escape(text: str) -> str:
    """A search value with FHIR's escapes (``\\``, ``\\|``, ``\\,``, ``\\$``)."""
    for special in ("\\", "|", ",", "$"):
        text = text.replace(special, "\\" + special)
    return text


def parse_identifier(token: str) -> tuple[str, str]:
    """``system|value`` as typed on a command line (the first ``|`` separates them)."""
    system, separator, value = token.partition("|")
    if not separator or not system or not value:
        raise BadRequest(f"'{token}' is not a device identifier: write it as system|value, "
                         "e.g. urn:hygeia:mqtt:device|ward-3/monitor-7.",
                         expression="identifier")
    return system, value


def find_device(session: Session, system: str, value: str, *,
                lock: bool = False) -> StoredVersion | None:
    """The current Device with this identifier, or None."""
    found = write.resolve_criteria(session, "Device", identifier_criteria(system, value),
                                   lock=lock)
    return None if found.id is None else session.current("Device", found.id)


def ensure_device(session: Session, system: str, value: str,
                  template: dict[str, Any] | None = None) -> str:
    """The id of the Device with this identifier, created from ``template`` when absent.

    ``template`` holds the other elements of a new Device (type, parent, name...);
    an existing Device is left as it is.
    """
    existing = find_device(session, system, value, lock=True)
    if existing is not None:
        return existing.id
    device = {"resourceType": "Device", **(template or {}),
              "identifier": [{"system": system, "value": value}]}
    device.setdefault("status", "active")
    response = write.create(session, "Device", device)
    assert response.location is not None
    return response.location.split("/")[1]


def content_of(version: StoredVersion) -> dict[str, Any]:
    resource: dict[str, Any] = orjson.loads(version.content or b"{}")
    return resource


def set_device_status(session: Session, device_id: str, status: str) -> bool:
    """Set Device.status (a new version only when it changes); True when it changed."""
    if status not in DEVICE_STATUSES:
        raise BadRequest(f"'{status}' is not a Device status; use one of "
                         f"{', '.join(DEVICE_STATUSES)}.", expression="Device.status")
    return _set(session, "Device", device_id, "status", status)


def set_metric_status(session: Session, metric_id: str, status: str) -> bool:
    """Set DeviceMetric.operationalStatus (a new version only when it changes)."""
    if status not in METRIC_STATUSES:
        raise BadRequest(f"'{status}' is not a DeviceMetric operational status; use one of "
                         f"{', '.join(METRIC_STATUSES)}.",
                         expression="DeviceMetric.operationalStatus")
    return _set(session, "DeviceMetric", metric_id, "operationalStatus", status)


def _set(session: Session, resource_type: str, id: str, element: str, value: str) -> bool:
    current = session.current(resource_type, id, for_update=True)
    if current is None or current.deleted:
        raise BadRequest(f"{resource_type}/{id} does not exist.", expression=resource_type)
    resource = content_of(current)
    if resource.get(element) == value:
        return False
    resource[element] = value
    write.update(session, resource_type, id, resource)
    return True
