"""ORU^R01 of IHE PCD-01 (Device Enterprise Communication): monitor data into FHIR.

Each metric OBX becomes an Observation: OBX-3's MDC code kept and LOINC added
(:mod:`.mdc`), OBX-5/6 a UCUM Quantity (:mod:`.units`), OBX-7 the device's alarm
limits as a labelled ``referenceRange``, OBX-8 ``interpretation`` or
``dataAbsentReason`` (:mod:`.flags`), OBX-11 ``status``, OBX-14 (else OBR-7)
``effectiveDateTime``. Blood pressure components (systolic, diastolic, mean of one
channel at one time) become one panel Observation with ``component`` s. Device
levels (OBX-4, OBX-18) become Device and DeviceMetric resources
(:mod:`.devices_tree`). Every Observation carries an ``urn:hygeia:hl7v2:obx``
identifier and an id derived from it, so a replay updates in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hygeia.devices.hl7v2.attribution import Attribution
from hygeia.devices.hl7v2.devices_tree import DeviceTree, containment, device_type
from hygeia.devices.hl7v2.flags import (
    absent_concept,
    absent_reason,
    in_alarm,
    interpretations,
    observation_status,
)
from hygeia.devices.hl7v2.handling import Rejected
from hygeia.devices.hl7v2.hl7time import FhirTime
from hygeia.devices.hl7v2.identity import OBX_SYSTEM, identifier, stable_id
from hygeia.devices.hl7v2.mdc import MDC, MdcTerm, is_vital_sign, loinc_codings, term
from hygeia.devices.hl7v2.obx import Obx, coded, reference_range, unit, value_of

VITAL_SIGNS = {"coding": [{
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "vital-signs", "display": "Vital Signs"}]}
ALARM_LIMITS = "alarm limits"


@dataclass(slots=True)
class Pcd01Result:
    """What one PCD-01 message became, before it is written."""

    observations: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # Observation id -> "OBX^n"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    """What every Observation of the message shares."""

    sender: str  # "APP|FACILITY"
    application: str  # MSH-3.1, for vendor private codes
    subject: str | None
    unattributed_note: str
    fallback_time: FhirTime | None  # OBR-7 of the OBX's order


def observations(rows: list[tuple[Obx, FhirTime | None]], sender: str, application: str,
                 attribution: Attribution) -> Pcd01Result:
    """The resources of a PCD-01 message's OBX rows (each with its OBR-7 time)."""
    result = Pcd01Result()
    tree = DeviceTree(sender, _eui64s(rows), {}, result.devices)
    panels: dict[tuple[str, str, str], dict[str, Any]] = {}
    contexts: dict[FhirTime | None, Context] = {}  # one per order time, not per row
    for obx, obr_time in rows:
        where = containment(obx.sub_id)
        if obx.sub_id and where is None:
            raise Rejected(f"OBX {obx.index} has the sub-ID {obx.sub_id!r} (OBX-4), which is not "
                           f"a containment MDS.VMD.CHANNEL.METRIC.", location=obx.where(4),
                           hl7_code="102")
        if where is not None and where.is_device_level and not obx.value:
            tree.describe(where, device_type(obx.code, obx.text))
            continue
        context = contexts.get(obr_time)
        if context is None:
            context = contexts[obr_time] = Context(sender, application, attribution.subject,
                                                   attribution.note, obr_time)
        meaning = term(obx.code, obx.text, application) if _is_mdc(obx) else MdcTerm(
            coded(obx.segment, 3, application).get("coding", []), known=False)
        result.notes.extend(meaning.notes)
        if meaning.is_panel and not obx.value:
            continue  # the panel's own row: its components make the Observation
        observation = _observation(obx, meaning, context, tree, result.notes)
        if meaning.panel_of is not None:
            observation = _add_component(panels, meaning.panel_of, obx, observation, result)
        else:
            result.observations.append(observation)
        result.origins.setdefault(observation["id"], f"OBX^{obx.index}")
    return result


def _is_mdc(obx: Obx) -> bool:
    return obx.system.upper() == "MDC" or obx.text.startswith("MDC_")


def _eui64s(rows: list[tuple[Obx, FhirTime | None]]) -> dict[int, str]:
    """The EUI-64 of each MDS, from OBX-18 of any row under it (the MDS row, usually)."""
    found: dict[int, str] = {}
    for obx, _ in rows:
        where = containment(obx.sub_id) if obx.sub_id else None
        mds = where.mds if where is not None else 1
        for equipment, kind in obx.equipment:
            if kind in {"EUI-64", ""} and mds not in found:
                found[mds] = equipment.upper()
    return found


def _observation(obx: Obx, meaning: MdcTerm, context: Context, tree: DeviceTree,
                 notes: list[str]) -> dict[str, Any]:
    found_unit = unit(obx)
    time = obx.time or context.fallback_time
    if time is not None and time.assumed_utc:
        notes.append(f"OBX {obx.index}: the time has no UTC offset and was read as UTC.")
    where = containment(obx.sub_id) if obx.sub_id else None
    device = None
    if where is not None or tree.eui64:
        device = tree.mds(where.mds if where is not None else 1)
        if where is not None:
            tree.metric(where, meaning.codings[0], found_unit)
    key = "^".join([context.sender.replace("|", "^"),
                    tree.mds_key(where.mds if where is not None else 1),
                    obx.sub_id, obx.code, time.value if time is not None else ""])
    status = observation_status(obx.status or "F")
    if status is None:
        raise Rejected(f"OBX {obx.index} has the result status {obx.status!r} (OBX-11), "
                       f"which is not in HL7 table 0085.", location=obx.where(11),
                       hl7_code="103")
    observation: dict[str, Any] = {
        "resourceType": "Observation", "id": stable_id("obs", key),
        "identifier": [identifier(OBX_SYSTEM, key)], "status": status,
        "code": {"coding": meaning.codings, "text": obx.text or obx.code}}
    if any(is_vital_sign(c) for c in meaning.codings):
        observation["category"] = [VITAL_SIGNS]
    if context.subject is not None:
        observation["subject"] = {"reference": context.subject}
    if time is not None:
        observation["effectiveDateTime"] = time.value
    _set_value(observation, obx, found_unit, context.application)
    concepts, unknown = interpretations(obx.flags)
    if concepts:
        observation["interpretation"] = concepts
    if unknown:
        notes.append(f"OBX {obx.index}: abnormal flags {', '.join(unknown)} (OBX-8) are not "
                     f"in the flag tables; kept only in the raw message.")
    ranges = reference_range(obx, found_unit, ALARM_LIMITS)
    if ranges:
        observation["referenceRange"] = ranges
    if device is not None:
        observation["device"] = {"reference": device}
    if context.subject is None:
        observation["note"] = [{"text": context.unattributed_note}]
    if in_alarm(obx.flags):
        notes.append(f"OBX {obx.index}: the device reports an alarm on {obx.text or obx.code}.")
    return observation


def _set_value(target: dict[str, Any], obx: Obx, found_unit: Any, application: str) -> None:
    value = value_of(obx, found_unit, application)
    if value is not None:
        target[value[0]] = value[1]
        return
    reason = absent_reason(obx.flags, obx.value) or ("error" if obx.status == "X" else "unknown")
    target["dataAbsentReason"] = absent_concept(reason)


def _add_component(panels: dict[tuple[str, str, str], dict[str, Any]], panel_code: str,
                   obx: Obx, part: dict[str, Any], result: Pcd01Result) -> dict[str, Any]:
    """Fold a blood-pressure component into the panel Observation of its channel and time."""
    where = containment(obx.sub_id)
    channel = f"{where.mds}.{where.vmd}.{where.channel}" if where is not None else ""
    time = part.get("effectiveDateTime", "")
    panel = panels.get((panel_code, channel, time))
    if panel is None:
        panel = _panel(panel_code, channel, part)
        panels[(panel_code, channel, time)] = panel
        result.observations.append(panel)
    component = {k: v for k, v in part.items() if k in {
        "code", "valueQuantity", "valueString", "valueCodeableConcept", "dataAbsentReason",
        "interpretation", "referenceRange"}}
    panel["component"].append(component)
    return panel


def _panel(panel_code: str, channel: str, first: dict[str, Any]) -> dict[str, Any]:
    """The panel Observation (85354-9 plus the panel's MDC code) for a channel and time."""
    meaning = term(panel_code, "", "")
    key = first["identifier"][0]["value"].rsplit("^", 3)
    key[1] = channel
    key[2] = panel_code
    ident = "^".join(key)
    panel = {k: v for k, v in first.items() if k in {
        "status", "category", "subject", "effectiveDateTime", "device", "note"}}
    loinc = [c for c in meaning.codings if c["system"] != MDC]
    mdc = [c for c in meaning.codings if c["system"] == MDC]
    return {"resourceType": "Observation", "id": stable_id("obs", ident),
            "identifier": [identifier(OBX_SYSTEM, ident)],
            **panel, "code": {"coding": [*loinc, *mdc],
                              "text": loinc_codings(["85354-9"])[0]["display"]},
            "component": []}
