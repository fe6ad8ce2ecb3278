"""ORU^R01 from laboratory analysers: Observations and a DiagnosticReport per OBR.

OBX-3 is LOINC or a local code (kept with a system local to the sending
application); the value, unit, reference range (OBX-7, labelled "reference
range"), flags and status map as for devices. Each OBR becomes a
DiagnosticReport: ``code`` from OBR-4, ``identifier`` from the filler order
number OBR-3 (else the placer's, OBR-2), ``status`` from OBR-25, ``effective``
from OBR-7, ``issued`` from OBR-22, ``result`` the OBX Observations under it.
Ids derive from sender, order number and OBX position, so a corrected result
(OBX-11 ``C``) updates the Observation it corrects.
"""

from __future__ import annotations

from typing import Any

import hl7

from hygeia.devices.hl7v2.flags import (
    absent_concept,
    absent_reason,
    interpretations,
    observation_status,
    report_status,
)
from hygeia.devices.hl7v2.handling import Rejected
from hygeia.devices.hl7v2.hl7time import FhirTime, fhir_datetime
from hygeia.devices.hl7v2.identity import (
    FILLER_SYSTEM,
    OBX_SYSTEM,
    identifier,
    stable_id,
)
from hygeia.devices.hl7v2.obx import Obx, coded, reference_range, unit, value_of
from hygeia.devices.hl7v2.segments import part

LABORATORY = {"coding": [{
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "laboratory", "display": "Laboratory"}]}
SECTIONS = "http://terminology.hl7.org/CodeSystem/v2-0074"
REFERENCE_RANGE = "reference range"


def order_number(obr: hl7.Segment, index: int, application: str) -> dict[str, Any]:
    """The report's identifier: OBR-3 (filler order number, EI), else OBR-2 (placer)."""
    for field, kind in ((3, "FILL"), (2, "PLAC")):
        value = part(obr, field, 1)
        if value:
            namespace = part(obr, field, 2) or part(obr, field, 3) or application
            return identifier(FILLER_SYSTEM + namespace if kind == "FILL"
                              else f"urn:hygeia:hl7v2:placer:{namespace}", value, kind)
    raise Rejected(f"OBR {index} has neither a filler (OBR-3) nor a placer (OBR-2) order "
                   f"number, so its results cannot be identified.", location=f"OBR^{index}^3",
                   hl7_code="101")


def report(obr: hl7.Segment, index: int, results: list[dict[str, Any]], application: str,
           subject: str | None) -> dict[str, Any]:
    """The DiagnosticReport of one OBR and the Observations made from its OBX rows."""
    ident = order_number(obr, index, application)
    status = _report_status(obr, index, results)
    found: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": stable_id("dr", f"{ident['system']}|{ident['value']}"),
        "identifier": [ident], "status": status,
        "category": [{"coding": [{"system": SECTIONS, "code": part(obr, 24) or "LAB"}]}],
        "code": coded(obr, 4, application) or {"text": "laboratory report"},
        "result": [{"reference": f"Observation/{o['id']}"} for o in results]}
    if not found["code"].get("coding") and not found["code"].get("text"):
        raise Rejected(f"OBR {index} has no universal service identifier (OBR-4).",
                       location=f"OBR^{index}^4", hl7_code="101")
    if subject is not None:
        found["subject"] = {"reference": subject}
    effective = _time(obr, 7, index)
    if effective is not None:
        found["effectiveDateTime"] = effective.value
    issued = _time(obr, 22, index)
    if issued is not None and "T" in issued.value and len(issued.value) >= 25:
        found["issued"] = issued.value
    return found


def observation(obx: Obx, obr: hl7.Segment, obr_index: int, application: str,
                subject: str | None, notes: list[str]) -> dict[str, Any]:
    """The Observation of one lab OBX under its OBR."""
    order = order_number(obr, obr_index, application)
    key = "^".join([order["system"], order["value"], part(obx.segment, 1) or str(obx.index),
                    obx.code, obx.sub_id])
    status = observation_status(obx.status or "F")
    if status is None:
        raise Rejected(f"OBX {obx.index} has the result status {obx.status!r} (OBX-11), "
                       f"which is not in HL7 table 0085.", location=obx.where(11),
                       hl7_code="103")
    found: dict[str, Any] = {
        "resourceType": "Observation", "id": stable_id("obs", key),
        "identifier": [identifier(OBX_SYSTEM, key)], "status": status,
        "category": [LABORATORY], "code": coded(obx.segment, 3, application)}
    if subject is not None:
        found["subject"] = {"reference": subject}
    time = obx.time or _time(obr, 7, obr_index)
    if time is not None:
        found["effectiveDateTime"] = time.value
    found_unit = unit(obx)
    value = value_of(obx, found_unit, application)
    if value is not None:
        found[value[0]] = value[1]
    else:
        reason = absent_reason(obx.flags, obx.value) or ("error" if obx.status == "X"
                                                         else "unknown")
        found["dataAbsentReason"] = absent_concept(reason)
    concepts, unknown = interpretations(obx.flags)
    if concepts:
        found["interpretation"] = concepts
    if unknown:
        notes.append(f"OBX {obx.index}: abnormal flags {', '.join(unknown)} (OBX-8) are not "
                     f"in the flag tables; kept only in the raw message.")
    ranges = reference_range(obx, found_unit, REFERENCE_RANGE)
    if ranges:
        found["referenceRange"] = ranges
    return found


def _report_status(obr: hl7.Segment, index: int, results: list[dict[str, Any]]) -> str:
    code = part(obr, 25).upper()
    if not code:
        return "final" if all(r["status"] == "final" for r in results) else "partial"
    status = report_status(code)
    if status is None:
        raise Rejected(f"OBR {index} has the result status {code!r} (OBR-25), which is not in "
                       f"HL7 table 0123.", location=f"OBR^{index}^25", hl7_code="103")
    return status


def _time(obr: hl7.Segment, field: int, index: int) -> FhirTime | None:
    raw = part(obr, field)
    if not raw:
        return None
    time = fhir_datetime(raw)
    if time is None:
        raise Rejected(f"OBR-{field} of OBR {index} ({raw!r}) is not an HL7 date/time.",
                       location=f"OBR^{index}^{field}", hl7_code="102")
    return time
