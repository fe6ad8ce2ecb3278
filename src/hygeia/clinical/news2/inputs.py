"""The engine's inputs: which Observations are NEWS2 vital signs, and their values.

The codes are the issue's contract (docs/guide/clinical.md lists them): LOINC
vital signs, ACVPU answers in SNOMED CT or LOINC (and a Hygeia code for new
confusion, which neither defines as an answer), and inhaled oxygen as
concentration above 21 % or flow above 0 L/min. A reading the engine cannot
use (no value, an unknown unit or answer, entered in error) is no reading: it
never becomes a silent zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from hygeia.clinical.news2.scoring import Consciousness
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import FhirError

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
NEWS2_SYSTEM = "urn:hygeia:codesystem:news2"
NEWS2_TOTAL = "1104051000000101"  # SNOMED CT: RCP NEWS2 total score
SCALE_2_FLAG = "spo2-scale-2"  # Flag.code in NEWS2_SYSTEM: the clinician's decision
NEW_CONFUSION = "new-confusion"  # ACVPU "C" in NEWS2_SYSTEM
PREGNANCY = "77386006"  # SNOMED CT: pregnancy (finding)

RESPIRATION, SPO2, OXYGEN, SYSTOLIC, PULSE, CONSCIOUSNESS, TEMPERATURE = (
    "respiration-rate", "spo2", "air-or-oxygen", "systolic-bp", "pulse",
    "consciousness", "temperature")
PARAMETERS = (RESPIRATION, SPO2, OXYGEN, SYSTOLIC, PULSE, CONSCIOUSNESS, TEMPERATURE)
DISPLAY = {RESPIRATION: "Respiration rate", SPO2: "SpO2", OXYGEN: "Air or oxygen",
           SYSTOLIC: "Systolic blood pressure", PULSE: "Pulse",
           CONSCIOUSNESS: "Consciousness (ACVPU)", TEMPERATURE: "Temperature"}

QUANTITIES = {"9279-1": RESPIRATION, "59408-5": SPO2, "2708-6": SPO2, "8480-6": SYSTOLIC,
              "8867-4": PULSE, "8310-5": TEMPERATURE}
BP_PANEL = "85354-9"
LEVEL_OF_CONSCIOUSNESS = "67775-7"
INHALED_CONCENTRATION = "3150-0"  # %: above 21 is oxygen
INHALED_FLOW = "3151-8"  # L/min: above 0 is oxygen
VITAL_CODES = (*QUANTITIES, BP_PANEL, LEVEL_OF_CONSCIOUSNESS, INHALED_CONCENTRATION,
               INHALED_FLOW)
# the LOINC codes whose Observations carry each parameter (a search for one parameter)
CODES_OF = {parameter: tuple(code for code, name in QUANTITIES.items() if name == parameter)
            for parameter in set(QUANTITIES.values())}
CODES_OF[SYSTOLIC] = (*CODES_OF[SYSTOLIC], BP_PANEL)
CODES_OF[CONSCIOUSNESS] = (LEVEL_OF_CONSCIOUSNESS,)
CODES_OF[OXYGEN] = (INHALED_CONCENTRATION, INHALED_FLOW)
PARAMETER_LOINC = {RESPIRATION: "9279-1", SPO2: "59408-5", SYSTOLIC: "8480-6",
                   PULSE: "8867-4", CONSCIOUSNESS: LEVEL_OF_CONSCIOUSNESS,
                   TEMPERATURE: "8310-5"}

ACVPU = {
    (SNOMED, "248234008"): Consciousness.ALERT,  # mentally alert
    (SNOMED, "130987000"): Consciousness.NEW_CONFUSION,  # acute confusion
    (SNOMED, "300202002"): Consciousness.VOICE,  # responds to voice
    (SNOMED, "450847001"): Consciousness.PAIN,  # responds to pain
    (SNOMED, "422768004"): Consciousness.UNRESPONSIVE,  # unresponsive
    # LOINC's answers to 67775-7 Level of responsiveness (the EMS answer list: A, V, P, U;
    # it has no answer for confusion); docs/guide/clinical.md gives the sources
    (LOINC, "LA9340-6"): Consciousness.ALERT,
    (LOINC, "LA17108-4"): Consciousness.VOICE,
    (LOINC, "LA17107-6"): Consciousness.PAIN,
    (LOINC, "LA9343-0"): Consciousness.UNRESPONSIVE,
    (NEWS2_SYSTEM, NEW_CONFUSION): Consciousness.NEW_CONFUSION,
}
USABLE_STATUS = frozenset({"final", "amended", "corrected", "preliminary"})


@dataclass(frozen=True, slots=True)
class Reading:
    """One parameter's value from one Observation, at its effective time (µs)."""

    parameter: str
    value: Decimal | Consciousness | bool  # bool: on oxygen (OXYGEN only)
    at: int
    source: str  # Observation/{id}


def loinc_codes(concept: dict[str, Any] | None) -> list[str]:
    return [str(coding.get("code")) for coding in (concept or {}).get("coding") or []
            if coding.get("system") == LOINC]


def is_news2_score(observation: dict[str, Any]) -> bool:
    return any(coding.get("system") == SNOMED and coding.get("code") == NEWS2_TOTAL
               for coding in (observation.get("code") or {}).get("coding") or [])


def effective_us(observation: dict[str, Any]) -> int | None:
    """When it was observed: effectiveDateTime, effectiveInstant or the period's end."""
    span = effective_span(observation)
    return None if span is None else span[0]


def effective_span(observation: dict[str, Any]) -> tuple[int, int] | None:
    """The start and end (µs, end excluded) of the time :func:`effective_us` reads, with
    its precision (``2026-03-01T10:00:00Z`` covers a second)."""
    text = observation.get("effectiveDateTime") or observation.get("effectiveInstant") or \
        (observation.get("effectivePeriod") or {}).get("end") or \
        (observation.get("effectivePeriod") or {}).get("start")
    if not isinstance(text, str):
        return None
    return _instant(text)


def effective_end(observation: dict[str, Any]) -> int | None:
    """Where a search sorted by ``-date`` (the end of the effective time) places the
    Observation: the end of its time, or None when that is not a time it states (a
    period without an end runs on)."""
    period = observation.get("effectivePeriod")
    if not (observation.get("effectiveDateTime") or observation.get("effectiveInstant")) \
            and isinstance(period, dict) and not period.get("end"):
        return None
    span = effective_span(observation)
    return None if span is None else span[1]


@lru_cache(maxsize=4096)
def _instant(text: str) -> tuple[int, int] | None:
    """The start and end of a FHIR dateTime, µs; remembered, because the vital signs of
    a set (and of a device's round) share one time, and parsing it was a tenth of the
    engine's own CPU."""
    try:
        return fhir_datetime_range(text)
    except FhirError:  # not a date: the reading has no time, so it is not used
        return None


def patient_of(observation: dict[str, Any]) -> str | None:
    reference = (observation.get("subject") or {}).get("reference")
    return reference if isinstance(reference, str) and reference.startswith("Patient/") \
        else None


def _quantity(value: Any) -> Decimal | None:
    if not isinstance(value, dict):
        return None
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    return Decimal(str(number))


def _temperature(value: Any) -> Decimal | None:
    number = _quantity(value)
    unit = (value or {}).get("code") or (value or {}).get("unit")
    if number is None:
        return None
    if unit in ("Cel", "°C", "C"):
        return number
    if unit in ("[degF]", "°F", "F"):
        return ((number - 32) * 5 / 9).quantize(Decimal("0.01"))
    return None


def _consciousness(concept: Any) -> Consciousness | None:
    for coding in (concept or {}).get("coding") or []:
        level = ACVPU.get((coding.get("system"), coding.get("code")))
        if level is not None:
            return level
    return None


def readings_of(observation: dict[str, Any]) -> list[Reading]:
    """The NEWS2 readings an Observation carries (none for most Observations)."""
    if observation.get("status") not in USABLE_STATUS or is_news2_score(observation):
        return []
    at = effective_us(observation)
    if at is None:
        return []
    source = f"Observation/{observation.get('id')}"
    found: list[Reading] = []
    for code in loinc_codes(observation.get("code")):
        found.extend(_readings_for(code, observation, at, source))
    return found


def _readings_for(code: str, observation: dict[str, Any], at: int,
                  source: str) -> list[Reading]:
    quantity = observation.get("valueQuantity")
    if code in QUANTITIES:
        parameter = QUANTITIES[code]
        value = _temperature(quantity) if parameter == TEMPERATURE else _quantity(quantity)
        return [] if value is None else [Reading(parameter, value, at, source)]
    if code == BP_PANEL:
        for component in observation.get("component") or []:
            if "8480-6" in loinc_codes(component.get("code")):
                value = _quantity(component.get("valueQuantity"))
                return [] if value is None else [Reading(SYSTOLIC, value, at, source)]
        return []
    if code == LEVEL_OF_CONSCIOUSNESS:
        level = _consciousness(observation.get("valueCodeableConcept"))
        return [] if level is None else [Reading(CONSCIOUSNESS, level, at, source)]
    if code in (INHALED_CONCENTRATION, INHALED_FLOW):
        value = _quantity(quantity)
        if value is None:
            return []
        threshold = Decimal(21) if code == INHALED_CONCENTRATION else Decimal(0)
        return [Reading(OXYGEN, value > threshold, at, source)]
    return []


ADULT_YEARS = 16
YEAR_US = 365.25 * 86400 * 1_000_000


def is_scale_2_flag(flag: dict[str, Any]) -> bool:
    """An active Flag recording the clinician's decision to use SpO2 scale 2."""
    return flag.get("status") == "active" and any(
        coding.get("system") == NEWS2_SYSTEM and coding.get("code") == SCALE_2_FLAG
        for coding in (flag.get("code") or {}).get("coding") or [])


def is_pregnancy(condition: dict[str, Any]) -> bool:
    """An active Condition coded SNOMED CT 77386006 (pregnancy)."""
    status = [coding.get("code") for coding in
              (condition.get("clinicalStatus") or {}).get("coding") or []]
    return "active" in status and any(
        coding.get("system") == SNOMED and coding.get("code") == PREGNANCY
        for coding in (condition.get("code") or {}).get("coding") or [])


def under_16(patient: dict[str, Any] | None, at: int) -> bool:
    """Whether the patient is younger than 16 at ``at`` (µs); False without a birth date."""
    birth = (patient or {}).get("birthDate")
    if not isinstance(birth, str):
        return False
    try:
        born = fhir_datetime_range(birth)[0]
    except FhirError:
        return False
    return (at - born) / YEAR_US < ADULT_YEARS
