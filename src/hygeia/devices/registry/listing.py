"""What ``hygeia devices list`` shows: one row per Device, read in one snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hygeia.devices.registry.association import patient_of
from hygeia.devices.registry.devices import content_of
from hygeia.fhir.datetime import format_instant
from hygeia.fhir.search.query import parse_query
from hygeia.store import Session, StoredVersion

# devices listed at most (a registry of more is searched through the FHIR API)
MAX_LISTED = 10_000


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    identifier: str  # "system|value" of the first identifier ("" when none)
    type: str
    status: str
    patient: str  # "Patient/123", or "" when no association covers now
    last_seen: str  # the newest Observation from it (lastUpdated), or ""


def device_rows(session: Session) -> list[DeviceRow]:
    """Every Device, with its patient now and when it last reported, by identifier."""
    query = parse_query("Device", [("_sort", "_id")], registry=session.registry,
                        max_count=MAX_LISTED)
    query.count = MAX_LISTED
    rows = [_row(session, version) for version in session.search(query).matches]
    return sorted(rows, key=lambda row: (row.identifier, row.id))


def _row(session: Session, version: StoredVersion) -> DeviceRow:
    device = content_of(version)
    return DeviceRow(version.id, _identifier(device), _type(device),
                     str(device.get("status", "")), patient_of(session, version.id) or "",
                     _last_seen(session, version.id))


def _identifier(device: dict[str, Any]) -> str:
    for identifier in device.get("identifier") or []:
        if identifier.get("value"):
            system = identifier.get("system")
            return f"{system}|{identifier['value']}" if system else identifier["value"]
    return ""


def _type(device: dict[str, Any]) -> str:
    kind = device.get("type") or {}
    if kind.get("text"):
        return str(kind["text"])
    for coding in kind.get("coding") or []:
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    names = device.get("deviceName") or []
    return str(names[0].get("name", "")) if names else ""


def _last_seen(session: Session, device_id: str) -> str:
    query = parse_query("Observation", [("device", f"Device/{device_id}"),
                                        ("_sort", "-_lastUpdated")], registry=session.registry)
    query.count = 1
    matches = session.search(query).matches
    return format_instant(matches[0].last_updated) if matches else ""
