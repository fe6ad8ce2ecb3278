from __future__ import annotations

import pytest

from hygeia.fhir.search.extract.components import tails_for
from hygeia.fhir.search.rows import MAX_TIME


@pytest.mark.parametrize(
    ("component", "fhir_type", "value", "tails"),
    [
        (
            "token",
            "CodeableConcept",
            {"coding": [{"system": "s", "code": "c"}, {"code": "d"}], "text": "ignored"},
            [("s", "c"), (None, "d")],
        ),
        ("token", "Identifier", {"system": "s", "value": "v"}, [("s", "v")]),
        ("token", "boolean", True, [(None, "true")]),
        ("token", "code", "final", [(None, "final")]),
        ("quantity", "Quantity", {"value": 1, "code": "mg"}, [(1.0, 1.0, None, "mg", None)]),
        (
            "quantity",
            "Money",
            {"value": 1, "currency": "USD"},
            [(1.0, 1.0, "urn:iso:std:iso:4217", "USD", None)],
        ),
        ("date", "Period", {"start": "1970-01-01"}, [(0, MAX_TIME)]),
        ("date", "dateTime", "1970-01-02", [(86_400_000_000, 172_800_000_000)]),
        ("string", "HumanName", {"family": "Doe", "given": ["Jo"]}, [("doe", "Doe"), ("jo", "Jo")]),
        ("number", "integer", 7, [(7.0, 7.0)]),
        ("uri", "uri", "urn:x", [("urn:x",)]),
        ("reference", "Reference", {"reference": "Patient/1"}, [("Patient", "1", None, None)]),
        ("reference", "canonical", "http://x/Q|2", [(None, None, "http://x/Q", "2")]),
        (
            "reference",
            "Patient",
            {"resourceType": "Patient", "id": "1"},
            [("Patient", "1", None, None)],
        ),
    ],
)
def test_component_tails(
    component: str, fhir_type: str, value: object, tails: list[tuple[object, ...]]
) -> None:
    function = tails_for(component, fhir_type)
    assert function is not None
    assert function(value) == tails
    assert function(["not", "a", "value"]) == []


def test_unindexed_combinations() -> None:
    assert tails_for("token", "Quantity") is None
