"""One OBX segment read into a record, and its value into a FHIR ``value[x]``.

Shared by the PCD-01 and the lab handlers. Anything that cannot be read
faithfully raises :class:`Rejected` naming the field (``OBX^3^5``: the third OBX,
field 5): a number that is not a number, an unknown unit, a missing code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import hl7

from hygeia.devices.hl7v2.flags import absent_reason
from hygeia.devices.hl7v2.handling import Rejected
from hygeia.devices.hl7v2.hl7time import FhirTime, fhir_datetime
from hygeia.devices.hl7v2.segments import part, repetition_count
from hygeia.devices.hl7v2.units import UCUM, Unit, unit_of

NUMERIC = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
RANGE = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*-\s*([+-]?\d+(?:\.\d+)?)\s*")
BOUND = re.compile(r"\s*([<>])=?\s*([+-]?\d+(?:\.\d+)?)\s*")
TEXT_TYPES = {"ST", "TX", "FT", "SN", "NA", "MA", "ED", "RP"}
CODED_TYPES = {"CWE", "CE", "CNE", "CF"}
TIME_TYPES = {"DTM", "TS", "DT"}
MAX_NUMBER = 40  # characters of a numeric value: more is not a measurement
MAX_TEXT = 10_000  # characters kept of a text value; the raw message keeps the rest


@dataclass(frozen=True, slots=True)
class Obx:
    """The fields of one OBX that the handlers map, and its position for ERR."""

    index: int  # 1-based position among the message's OBX segments
    value_type: str  # OBX-2
    code: str  # OBX-3.1
    text: str  # OBX-3.2
    system: str  # OBX-3.3
    sub_id: str  # OBX-4 (PCD: the containment MDS.VMD.CHAN.METRIC)
    value: str  # OBX-5 (first repetition, first component)
    segment: hl7.Segment
    flags: list[str]  # OBX-8 repetitions
    status: str  # OBX-11
    time: FhirTime | None  # OBX-14
    equipment: list[tuple[str, str]]  # OBX-18 repetitions: (id, type e.g. EUI-64)

    def where(self, field: int) -> str:
        """The ERR location of a field of this OBX (``OBX^2^5``)."""
        return f"OBX^{self.index}^{field}"


def read_obx(segment: hl7.Segment, index: int) -> Obx:
    """The record of one OBX; refuses a missing OBX-3 or an unreadable OBX-14."""
    where = f"OBX^{index}"
    code, text = part(segment, 3, 1), part(segment, 3, 2)
    if not code:
        raise Rejected(f"OBX {index} has no observation identifier code (OBX-3.1)"
                       + (f"; its text {text!r} alone cannot be searched." if text else "."),
                       location=f"{where}^3", hl7_code="101")
    raw_time = part(segment, 14)
    time = fhir_datetime(raw_time) if raw_time else None
    if raw_time and time is None:
        raise Rejected(f"OBX-14 of OBX {index} ({raw_time!r}) is not an HL7 date/time.",
                       location=f"{where}^14", hl7_code="102")
    return Obx(index=index, value_type=part(segment, 2).upper(), code=code, text=text,
               system=part(segment, 3, 3), sub_id=part(segment, 4), value=part(segment, 5),
               segment=segment,
               flags=[f for r in range(1, repetition_count(segment, 8) + 1)
                      if (f := part(segment, 8, 1, r))],
               status=part(segment, 11).upper(), time=time,
               equipment=[(part(segment, 18, 1, r), part(segment, 18, 2, r).upper())
                          for r in range(1, repetition_count(segment, 18) + 1)
                          if part(segment, 18, 1, r)])


def unit(obx: Obx) -> Unit | None:
    """The UCUM unit of OBX-6; None when there is none; refuses an unknown MDC unit."""
    code, text, system = (part(obx.segment, 6, c) for c in (1, 2, 3))
    if not code and not text:
        return None
    found = unit_of(code, text, system)
    if found is None and (system.upper() == "MDC" or code.isdigit()):
        raise Rejected(f"OBX {obx.index} has the unit {code}^{text}^{system} (OBX-6), which "
                       f"is not in the MDC unit table.", location=obx.where(6), hl7_code="103")
    return found if found is not None else Unit("", text or code)


def quantity(number: str, found: Unit | None) -> dict[str, Any]:
    """A FHIR Quantity (the number as a JSON number, keeping the sender's precision)."""
    value: dict[str, Any] = {"value": float(number) if any(c in number for c in ".eE")
                             else int(number)}
    if found is not None:
        value["unit"] = found.unit
        if found.code:
            value.update(system=UCUM, code=found.code)
    return value


def value_of(obx: Obx, found_unit: Unit | None, sender_application: str
             ) -> tuple[str, Any] | None:
    """The ``value[x]`` element (name and value) of OBX-5, or None when absent.

    A value the flags or the sentinel table call absent is None too (the caller sets
    ``dataAbsentReason``).
    """
    if not obx.value or absent_reason(obx.flags, obx.value) is not None:
        return None
    if obx.value_type == "NM":
        if len(obx.value) > MAX_NUMBER or not NUMERIC.fullmatch(obx.value) or \
                not math.isfinite(float(obx.value)):
            raise Rejected(f"OBX {obx.index} is numeric (NM) but its value {obx.value!r} "
                           f"(OBX-5) is not a number.", location=obx.where(5), hl7_code="102")
        return "valueQuantity", quantity(obx.value, found_unit)
    if obx.value_type in CODED_TYPES:
        return "valueCodeableConcept", coded(obx.segment, 5, sender_application)
    if obx.value_type in TIME_TYPES:
        time = fhir_datetime(obx.value)
        if time is None:
            raise Rejected(f"OBX {obx.index} is a date/time but {obx.value!r} (OBX-5) is not.",
                           location=obx.where(5), hl7_code="102")
        return "valueDateTime", time.value
    if obx.value_type in TEXT_TYPES:
        return "valueString", str(obx.segment[5])[:MAX_TEXT] if obx.value_type != "ST" \
            else obx.value[:MAX_TEXT]
    raise Rejected(f"OBX {obx.index} has the value type {obx.value_type or '(none)'} (OBX-2), "
                   f"which Hygeia does not map.", location=obx.where(2), hl7_code="102")


CODING_SYSTEMS = {
    "LN": "http://loinc.org", "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct", "SNOMED-CT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct", "MDC": "urn:iso:std:iso:11073:10101",
    "UCUM": UCUM, "HL70078": "http://terminology.hl7.org/CodeSystem/v2-0078",
}


def coding_system(name: str, sender_application: str) -> str:
    """The FHIR system of an HL7 coding system name; local codes (``L``, ``99zzz``,
    blank) are local to the sending application."""
    known = CODING_SYSTEMS.get(name.upper())
    if known:
        return known
    return f"urn:hygeia:hl7v2:code:{sender_application or 'unknown'}:{name or 'L'}"


def coded(segment: hl7.Segment, field: int, sender_application: str) -> dict[str, Any]:
    """A CWE field (code^text^system, and the alternate code in components 4-6)."""
    codings = []
    for first in (1, 4):
        code, text, system = (part(segment, field, first + i) for i in range(3))
        if code:
            coding = {"system": coding_system(system, sender_application), "code": code}
            if text:
                coding["display"] = text
            codings.append(coding)
    concept: dict[str, Any] = {"coding": codings} if codings else {}
    text = part(segment, field, 2) or part(segment, field, 9)
    if text:
        concept["text"] = text
    return concept


def reference_range(obx: Obx, found_unit: Unit | None, label: str) -> list[dict[str, Any]]:
    """OBX-7 as a referenceRange: ``50-120``, ``>5`` or ``<200`` with their unit, and
    ``label`` as its text (``alarm limits`` for a device, ``reference range`` for lab)."""
    raw = part(obx.segment, 7)
    if not raw:
        return []
    found: dict[str, Any] = {}
    if (both := RANGE.fullmatch(raw)) is not None:
        found = {"low": quantity(both.group(1), found_unit),
                 "high": quantity(both.group(2), found_unit)}
    elif (bound := BOUND.fullmatch(raw)) is not None:
        found = {"low" if bound.group(1) == ">" else "high": quantity(bound.group(2), found_unit)}
    found["text"] = f"{label}: {raw}"
    return [found]
