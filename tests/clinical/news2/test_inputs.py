"""Which Observations are NEWS2 readings, and what they say (the contract's codes)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hygeia.clinical.news2.inputs import readings_of
from hygeia.clinical.news2.scoring import Consciousness

LOINC = "http://loinc.org"


def observation(code: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": "Patient/p"},
            "effectiveDateTime": "2026-03-01T10:00:00Z", **extra}


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"valueQuantity": {"value": value, "unit": unit, "code": unit}}


def answer(system: str, code: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


@pytest.mark.parametrize(("resource", "expected"), [
    (observation("9279-1", **quantity(18, "/min")), ("respiration-rate", Decimal(18))),
    (observation("2708-6", **quantity(95, "%")), ("spo2", Decimal(95))),
    (observation("8310-5", **quantity(100.4, "[degF]")), ("temperature", Decimal("38.00"))),
    (observation("85354-9", component=[
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
         "valueQuantity": {"value": 118}}]), ("systolic-bp", Decimal(118))),
    (observation("3150-0", **quantity(21, "%")), ("air-or-oxygen", False)),
    (observation("3150-0", **quantity(28, "%")), ("air-or-oxygen", True)),
    (observation("3151-8", **quantity(0, "L/min")), ("air-or-oxygen", False)),
    (observation("3151-8", **quantity(2, "L/min")), ("air-or-oxygen", True)),
    (observation("67775-7", **answer("http://snomed.info/sct", "300202002")),
     ("consciousness", Consciousness.VOICE)),
    (observation("67775-7", **answer("urn:hygeia:codesystem:news2", "new-confusion")),
     ("consciousness", Consciousness.NEW_CONFUSION)),
    (observation("67775-7", **answer(LOINC, "LA9343-0")),
     ("consciousness", Consciousness.UNRESPONSIVE)),
    (observation("67775-7", **answer(LOINC, "LA9340-6")), ("consciousness", Consciousness.ALERT)),
    (observation("67775-7", **answer(LOINC, "LA17108-4")),
     ("consciousness", Consciousness.VOICE)),
    (observation("67775-7", **answer(LOINC, "LA17107-6")), ("consciousness", Consciousness.PAIN)),
])
def test_a_reading(resource: dict[str, Any], expected: tuple[str, object]) -> None:
    [reading] = readings_of(resource)
    assert (reading.parameter, reading.value, reading.source) == (*expected, "Observation/o1")


@pytest.mark.parametrize("resource", [
    observation("67775-7", **answer("http://snomed.info/sct", "1234567")),  # unknown answer
    # GCS verbal "Confused" (disoriented speech) is not ACVPU's *new* confusion
    observation("67775-7", **answer(LOINC, "LA6560-2")),
    observation("8310-5", **quantity(37, "K")),  # a unit the chart has no row for
    observation("8867-4", **quantity(80, "/min"), status="entered-in-error"),
    observation("8867-4", valueString="80"),
    observation("8867-4", **quantity(80, "/min"), effectiveDateTime="yesterday"),
    observation("2345-7", **quantity(97, "mg/dL")),  # not a vital sign
])
def test_no_reading_rather_than_a_guess(resource: dict[str, Any]) -> None:
    assert readings_of(resource) == []
