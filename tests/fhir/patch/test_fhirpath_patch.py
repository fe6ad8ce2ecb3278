"""FHIRPath Patch operations (R4 fhirpatch.html), one behaviour per test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygeia.fhir.outcome import BadRequest, FhirError, Unprocessable
from hygeia.fhir.patch import apply_fhirpath_patch
from hygeia.fhir.patch.locate import locate, split_parent


def op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    items = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        items.append({"name": name, **value})
    return {"name": "operation", "part": items}


def patch(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    return apply_fhirpath_patch(resource, {"resourceType": "Parameters",
                                           "parameter": list(operations)})


PATIENT = {"resourceType": "Patient", "id": "p",
           "name": [{"use": "official", "family": "A", "given": ["One", "Two"]},
                    {"use": "nickname", "given": ["Nick"]}],
           "contact": [{"gender": "male"}]}


def test_replace_leaves_the_original_untouched() -> None:
    result = patch(PATIENT, op("replace", "Patient.name[0].family", value={"valueString": "B"}))
    assert result["name"][0]["family"] == "B"
    assert PATIENT["name"][0]["family"] == "A"


def test_add_single_and_repeating_elements() -> None:
    result = patch(PATIENT,
                   op("add", "Patient", name={"valueString": "gender"},
                      value={"valueCode": "female"}),
                   op("add", "Patient.name.where(use = 'nickname')",
                      name={"valueString": "given"}, value={"valueString": "Second"}))
    assert result["gender"] == "female"
    assert result["name"][1]["given"] == ["Nick", "Second"]


def test_add_existing_single_element_is_refused() -> None:
    with pytest.raises(Unprocessable, match="already has a value"):
        patch(PATIENT, op("add", "Patient.name[0]", name={"valueString": "family"},
                          value={"valueString": "X"}))


def test_add_choice_and_backbone_from_parts() -> None:
    result = patch(PATIENT,
                   op("add", "Patient", name={"valueString": "deceased"},
                      value={"valueBoolean": False}),
                   op("add", "Patient", name={"valueString": "contact"},
                      value={"part": [{"name": "gender", "valueCode": "female"},
                                      {"name": "telecom",
                                       "valueContactPoint": {"system": "phone",
                                                             "value": "1"}}]}))
    assert result["deceasedBoolean"] is False
    assert result["contact"][1] == {"gender": "female",
                                    "telecom": [{"system": "phone", "value": "1"}]}


def test_insert_move_and_delete() -> None:
    result = patch(PATIENT,
                   op("insert", "Patient.name[0].given", index={"valueInteger": 0},
                      value={"valueString": "Zero"}),
                   op("move", "Patient.name[0].given", source={"valueInteger": 2},
                      destination={"valueInteger": 0}),
                   op("delete", "Patient.name.where(use = 'nickname')"),
                   op("delete", "Patient.birthDate"))  # absent: nothing to do
    assert result["name"] == [{"use": "official", "family": "A",
                               "given": ["Two", "Zero", "One"]}]


def test_deleting_last_item_removes_the_element() -> None:
    result = patch(PATIENT, op("delete", "Patient.contact[0]"))
    assert "contact" not in result


def test_ambiguous_path_is_refused_with_location() -> None:
    with pytest.raises(Unprocessable) as raised:
        patch(PATIENT, op("replace", "Patient.name.given", value={"valueString": "X"}))
    assert raised.value.issues[0].expression == "Parameters.parameter[0]"
    assert "selects 3 elements" in raised.value.issues[0].diagnostics


def test_bad_operations() -> None:
    with pytest.raises(BadRequest, match="Unknown operation type"):
        patch(PATIENT, op("upsert", "Patient"))
    with pytest.raises(BadRequest, match="must start with the resource type"):
        patch(PATIENT, op("delete", "Observation.status"))
    with pytest.raises(BadRequest, match="does not support"):
        patch(PATIENT, op("delete", "Patient.name.exists()"))
    with pytest.raises(BadRequest, match="Parameters"):
        apply_fhirpath_patch(PATIENT, [])


def test_locate_choice_by_base_name() -> None:
    observation = {"resourceType": "Observation", "valueQuantity": {"value": 1}}
    assert locate(observation, "Observation.value.value")[0].value == 1


def test_split_parent() -> None:
    assert split_parent("Patient.name[0].given") == ("Patient.name[0]", "given")
    with pytest.raises(BadRequest):
        split_parent("Patient.name[0]")


@given(st.text(max_size=30))
def test_any_path_fails_cleanly(path: str) -> None:
    try:
        patch(PATIENT, op("delete", path))
    except FhirError as error:
        assert error.issues
