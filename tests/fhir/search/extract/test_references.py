from __future__ import annotations

import pytest

from hygeia.fhir.search.extract.references import parse_reference, target_type


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("Patient/1", ("Patient", "1", None, None)),
        ("Patient/1/_history/2", ("Patient", "1", None, "2")),
        ("http://x/fhir/Patient/1", ("Patient", "1", "http://x/fhir/Patient/1", None)),
        (
            "https://x/fhir/Patient/a.b-c/_history/7",
            ("Patient", "a.b-c", "https://x/fhir/Patient/a.b-c", "7"),
        ),
        (
            "urn:uuid:6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2",
            (None, None, "urn:uuid:6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2", None),
        ),
        ("urn:oid:1.2.3", (None, None, "urn:oid:1.2.3", None)),
    ],
)
def test_parse_reference(text: str, parsed: tuple[object, ...]) -> None:
    assert parse_reference(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["#contained", "Patient?identifier=x", "NotAType/1", "Patient/", "Patient/has space", ""],
)
def test_unusable_references(text: str) -> None:
    assert parse_reference(text) is None


def test_target_type() -> None:
    assert target_type({"reference": "Patient/1"}) == "Patient"
    assert target_type({"reference": "http://x/Group/1"}) == "Group"
    assert target_type({"reference": "urn:uuid:1", "type": "Patient"}) == "Patient"
    assert (
        target_type(
            {
                "identifier": {"value": "1"},
                "type": "http://hl7.org/fhir/StructureDefinition/Patient",
            }
        )
        == "Patient"
    )
    assert target_type({"reference": "#x"}) is None
    assert target_type("http://x/Questionnaire/q|1") == "Questionnaire"
    assert target_type(42) is None
