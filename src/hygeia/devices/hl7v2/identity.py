"""Deterministic ids and identifiers, so a replayed message lands on the same resources.

A resource made from a message gets an id derived from what identifies its
content in the world (sender, device EUI-64, containment, code, time ...), so
processing the same message twice, or a corrected one, updates the resource in
place instead of creating a copy.

Identifier systems used here (documented in docs/guide/devices-hl7v2-mapping.md):

* ``urn:hygeia:hl7v2:obx`` - one OBX result, value ``APP^FACILITY^...`` parts.
* ``urn:hygeia:hl7v2:device`` - a device level without an EUI-64 (``MDS-KEY/VMD.CHANNEL``).
* ``urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680`` - an IEEE EUI-64 (OBX-18), as the HL7
  Point-of-Care Device implementation guide names it.
* ``urn:hygeia:hl7v2:location`` - a bed, value ``FACILITY/POC/ROOM/BED`` from a PL
  (PV1-3: facility is PL.4, point of care PL.1, room PL.2, bed PL.3; empty parts
  stay empty, so ``HOSP/ICU//3``). The ADT handlers give Location resources this
  identifier; device data finds the patient in a bed through it.
* ``urn:hygeia:hl7v2:assigner:{NAMESPACE}`` - a PID-3 identifier whose assigning
  authority has no ISO OID (NAMESPACE is CX.4.1, else the sending facility).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any
from urllib.parse import quote

OBX_SYSTEM = "urn:hygeia:hl7v2:obx"
DEVICE_SYSTEM = "urn:hygeia:hl7v2:device"
EUI64_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
LOCATION_SYSTEM = "urn:hygeia:hl7v2:location"
ASSIGNER_SYSTEM = "urn:hygeia:hl7v2:assigner:"
FILLER_SYSTEM = "urn:hygeia:hl7v2:filler:"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


@lru_cache(maxsize=4096)  # a monitor's devices are named again by every message it sends
def stable_id(kind: str, key: str) -> str:
    """A FHIR id (at most 64 characters) that is the same whenever ``key`` is.

    >>> stable_id("obs", "a") == stable_id("obs", "a") != stable_id("obs", "b")
    True
    """
    return f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def system_of_authority(namespace: str, universal_id: str, universal_type: str,
                        fallback_namespace: str) -> str:
    """The identifier system of an HL7 assigning authority (HD: namespace^id^type)."""
    if universal_id and universal_type.upper() == "ISO":
        return f"urn:oid:{universal_id}"
    if universal_id and universal_type.upper() in {"URI", "URL"}:
        return universal_id
    # quoted: a namespace may hold characters (a space, "|") that a token search splits on
    return ASSIGNER_SYSTEM + quote(namespace or universal_id or fallback_namespace or "unknown",
                                   safe="")


def location_value(facility: str, point_of_care: str, room: str, bed: str) -> str:
    """The bed identifier value ``FACILITY/POC/ROOM/BED`` ("" when all parts are empty)."""
    parts = [facility, point_of_care, room, bed]
    return "/".join(parts) if any(parts) else ""


def token(system: str, value: str) -> str:
    """``system|value`` for a token search, with the search syntax's characters escaped."""
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|") \
            .replace("$", "\\$")
    return f"{escape(system)}|{escape(value)}"


def identifier(system: str, value: str, type_code: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {"system": system, "value": value}
    if type_code:
        found["type"] = {"coding": [{"system": IDENTIFIER_TYPE, "code": type_code}]}
    return found
