"""JSON-level rules of json.html that the walker enforces."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.validation import validate


def expressions(resource: dict[str, Any]) -> list[str | None]:
    return [issue.expression for issue in validate(resource)]


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def test_primitive_extensions_may_stand_alone_or_beside_a_value() -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueCode": "asked"}]}
    assert expressions(patient(_birthDate=ext)) == []
    assert expressions(patient(birthDate="1970", _birthDate={"id": "b", **ext})) == []


def test_null_in_a_primitive_array_needs_an_extension_twin() -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    ok = {"given": ["A", None], "_given": [None, ext]}
    assert expressions(patient(name=[ok])) == []
    assert expressions(patient(name=[{"_given": [ext, ext]}])) == []
    both_null = {"given": ["A", None], "_given": [ext, None]}
    assert expressions(patient(name=[both_null])) == ["Patient.name[0].given[1]"]
    assert expressions(patient(name=[{"_given": [ext, None]}])) == ["Patient.name[0]._given[1]"]


def test_extension_twin_of_a_repeating_primitive_must_be_an_array() -> None:
    assert expressions(patient(name=[{"given": ["A"], "_given": {"id": "x"}}])) == [
        "Patient.name[0]._given"
    ]


def test_choice_extension_twin_counts_as_the_same_variant() -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    assert expressions(patient(deceasedBoolean=True, _deceasedBoolean=ext)) == []
    assert expressions(patient(deceasedBoolean=True, _deceasedDateTime=ext)) == [
        "Patient._deceasedDateTime"
    ]


def test_required_primitive_satisfied_by_its_extension_twin() -> None:
    ext = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }
    observation = {"resourceType": "Observation", "_status": ext, "code": {"text": "x"}}
    assert expressions(observation) == []


def test_contained_resource_and_local_reference() -> None:
    resource = patient(
        contained=[{"resourceType": "Organization", "id": "org", "name": "Acme"}],
        managingOrganization={"reference": "#org"},
    )
    assert expressions(resource) == []


def test_nested_resources_in_bundles_and_parameters() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient(gender="x")}, {"resource": patient(active=1)}],
    }
    assert expressions(bundle) == [
        "Bundle.entry[0].resource.gender",
        "Bundle.entry[1].resource.active",
    ]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "part": [{"name": "q", "resource": patient(x=1)}]}],
    }
    assert expressions(parameters) == ["Parameters.parameter[0].part[0].resource.x"]


def test_content_reference_recursion() -> None:
    item: dict[str, Any] = {"linkId": "1", "type": "group"}
    for depth in range(5):
        item = {"linkId": str(depth), "type": "group", "item": [item]}
    item["item"][0]["item"][0]["type"] = "nope"
    questionnaire = {"resourceType": "Questionnaire", "status": "draft", "item": [item]}
    assert expressions(questionnaire) == ["Questionnaire.item[0].item[0].item[0].type"]


@pytest.mark.parametrize(
    ("elements", "expression"),
    [
        ({"name": [{"given": ["a"], "given2": 1}]}, "Patient.name[0].given2"),
        ({"active": [True]}, "Patient.active"),
        ({"name": [[]]}, "Patient.name[0]"),
        ({"name": [None]}, "Patient.name[0]"),
        ({"contained": [None]}, "Patient.contained[0]"),
        ({"contained": [{"resourceType": []}]}, "Patient.contained[0]"),
        ({"managingOrganization": "Organization/1"}, "Patient.managingOrganization"),
        (
            {"link": [{"other": {"reference": "Patient/1"}, "type": "refer", "x": None}]},
            "Patient.link[0].x",
        ),
    ],
)
def test_structural_problems(elements: dict[str, Any], expression: str) -> None:
    assert expression in expressions(patient(**elements))


def test_unknown_non_string_keys_do_not_crash() -> None:
    resource: dict[Any, Any] = {"resourceType": "Patient", 1: "x"}
    assert validate(resource)


def test_message_names_the_disallowed_choice_type() -> None:
    (issue,) = validate(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueDate": "2020",
        }
    )
    assert "value[x]" in issue.diagnostics
