"""FHIRPath Patch operations (R4 fhirpatch.html), one behaviour per test."""

from __future__ import annotations

from typing import Any

import fhirpathpy
import orjson
import pytest
from fhirpathpy.models import models
from hypothesis import given, settings
from hypothesis import strategies as st

from hygeia.fhir.outcome import BadRequest, FhirError, Unprocessable
from hygeia.fhir.patch import PatchLimits, apply_fhirpath_patch
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
    with pytest.raises(Unprocessable, match="does not support") as raised:
        patch(PATIENT, op("delete", "Patient.name.exists()"))
    assert raised.value.issues[0].code == "not-supported"
    with pytest.raises(BadRequest, match="not a FHIRPath expression"):
        patch(PATIENT, op("delete", "Patient..name"))
    with pytest.raises(BadRequest, match="Parameters"):
        apply_fhirpath_patch(PATIENT, [])


def test_locate_choice_by_base_name() -> None:
    observation = {"resourceType": "Observation", "valueQuantity": {"value": 1}}
    assert locate(observation, "Observation.value.value")[0].value == 1


def test_split_parent() -> None:
    assert split_parent("Patient.name[0].given") == ("Patient.name[0]", "given")
    with pytest.raises(Unprocessable):
        split_parent("Patient.name[0]")


@given(st.text(max_size=30))
def test_any_path_fails_cleanly(path: str) -> None:
    try:
        patch(PATIENT, op("delete", path))
    except FhirError as error:
        assert error.issues


# --- the spec's rules on paths (fhirpatch.html: "base rules") ---------------------------


@pytest.mark.parametrize("kind", ["delete", "replace"])
def test_the_resource_itself_cannot_be_deleted_or_replaced(kind: str) -> None:
    extra = {"value": {"valueString": "x"}} if kind == "replace" else {}
    with pytest.raises(Unprocessable, match="is the resource itself") as raised:
        patch(PATIENT, op(kind, "Patient", **extra))
    assert raised.value.issues[0].expression == "Parameters.parameter[0]"


def test_where_criteria_are_real_fhirpath() -> None:
    """The attack of issue 13: 'or' was read as part of a string literal."""
    resource = {"resourceType": "Patient", "name": [{"family": "F", "given": ["A"]},
                                                    {"family": "G", "given": ["B"]}]}
    result = patch(resource, op("delete", "Patient.name.where(family='nomatch' or given='A')"))
    assert result["name"] == [{"family": "G", "given": ["B"]}]


@pytest.mark.parametrize(("criteria", "kept"), [
    ("use = 'official' and family = 'A'", "official"),
    ("family.exists().not()", "nickname"),
    ("given.first().startsWith('Ni')", "nickname"),
    ("given.count() = 2", "official"),
    ("$this.use in 'nickname'", "nickname"),
    ("family.exists() and family.startsWith('(') = false", "official"),
    ("family", "official"),  # one non-boolean value counts as true (singleton rule)
])
def test_where_criteria_shapes(criteria: str, kept: str) -> None:
    result = patch(PATIENT, op("replace", f"Patient.name.where({criteria}).use",
                               value={"valueCode": "usual"}))
    changed = [name for name in result["name"] if name["use"] == "usual"]
    assert len(changed) == 1
    assert changed[0] == {**next(n for n in PATIENT["name"] if n["use"] == kept),
                          "use": "usual"}


@pytest.mark.parametrize("criteria", [
    "descendants().count() > 1", "repeat(given).exists()", "family.matches('(a+)+$')",
    "%resource.id = 'p'", "use in ('a' | 'b')", "family ~ 'a'",
])
def test_costly_or_far_reaching_criteria_are_refused(criteria: str) -> None:
    with pytest.raises(Unprocessable, match="criteria may not use") as raised:
        patch(PATIENT, op("delete", f"Patient.name.where({criteria})"))
    assert raised.value.issues[0].code == "not-supported"


def test_where_examines_a_bounded_amount_of_elements() -> None:
    resource = {"resourceType": "Patient",
                "identifier": [{"value": "x" * 100} for _ in range(50)]}
    path = "Patient.identifier.where(value = 'none')"
    apply_fhirpath_patch(resource, {"resourceType": "Parameters",
                                    "parameter": [op("delete", path)]},
                         PatchLimits(max_where_bytes=10_000))
    with pytest.raises(Unprocessable, match="examine more than 10,000 bytes"):
        apply_fhirpath_patch(resource, {"resourceType": "Parameters",
                                        "parameter": [op("delete", path)] * 2},
                             PatchLimits(max_where_bytes=10_000))


def test_where_giving_several_values_per_element_is_refused() -> None:
    with pytest.raises(Unprocessable, match="must give true or false"):
        patch(PATIENT, op("delete", "Patient.name.where(given)"))


@pytest.mark.parametrize(("kind", "path", "parts"), [
    ("add", "Patient.name", {"name": {"valueString": "text"}, "value": {"valueString": "x"}}),
    ("replace", "Patient.name.given", {"value": {"valueString": "x"}}),
    ("delete", "Patient.name", {}),
    ("insert", "Patient.name.given", {"index": {"valueInteger": 0},
                                      "value": {"valueString": "x"}}),
    ("move", "Patient.name.given", {"source": {"valueInteger": 0},
                                    "destination": {"valueInteger": 1}}),
])
def test_paths_selecting_several_elements_are_refused(kind: str, path: str,
                                                      parts: dict[str, Any]) -> None:
    with pytest.raises(Unprocessable, match=r"selects [23] elements"):
        patch(PATIENT, op(kind, path, **parts))


@pytest.mark.parametrize(("kind", "parts"), [
    ("add", {"name": {"valueString": "text"}, "value": {"valueString": "x"}}),
    ("replace", {"value": {"valueString": "x"}}),
])
def test_paths_selecting_nothing_are_refused_except_by_delete(kind: str,
                                                              parts: dict[str, Any]) -> None:
    with pytest.raises(Unprocessable, match="selects 0 elements"):
        patch(PATIENT, op(kind, "Patient.name.where(use = 'old')", **parts))
    assert patch(PATIENT, op("delete", "Patient.name.where(use = 'old')")) == PATIENT


def test_insert_bounds_and_into_an_absent_list() -> None:
    end = patch(PATIENT, op("insert", "Patient.name[1].given", index={"valueInteger": 1},
                            value={"valueString": "Last"}))
    assert end["name"][1]["given"] == ["Nick", "Last"]
    with pytest.raises(Unprocessable, match="between 0 and 1"):
        patch(PATIENT, op("insert", "Patient.name[1].given", index={"valueInteger": 2},
                          value={"valueString": "x"}))
    new = patch(PATIENT, op("insert", "Patient.telecom", index={"valueInteger": 0},
                            value={"valueContactPoint": {"system": "phone", "value": "1"}}))
    assert new["telecom"] == [{"system": "phone", "value": "1"}]


def test_insert_into_a_single_element_is_refused() -> None:
    with pytest.raises(Unprocessable, match="not a repeating element"):
        patch(PATIENT, op("insert", "Patient.name[0].family", index={"valueInteger": 0},
                          value={"valueString": "x"}))


def test_move_out_of_range_is_refused() -> None:
    with pytest.raises(Unprocessable, match="below 2"):
        patch(PATIENT, op("move", "Patient.name", source={"valueInteger": 0},
                          destination={"valueInteger": 2}))


def test_replace_changes_the_type_of_a_choice_element() -> None:
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
                   "valueQuantity": {"value": 1}}
    result = patch(observation, op("replace", "Observation.value",
                                   value={"valueString": "high"}))
    assert "valueQuantity" not in result
    assert result["valueString"] == "high"


def test_add_refuses_a_second_type_of_a_choice_element() -> None:
    observation = {"resourceType": "Observation", "valueQuantity": {"value": 1}}
    with pytest.raises(Unprocessable, match="already has a value"):
        patch(observation, op("add", "Observation", name={"valueString": "value"},
                              value={"valueString": "x"}))


def test_primitive_extensions_follow_their_values() -> None:
    extension = {"extension": [{"url": "urn:x", "valueString": "e"}]}
    resource = {"resourceType": "Patient", "birthDate": "1970-01-01", "_birthDate": extension,
                "name": [{"given": ["A", "B", "C"], "_given": [None, extension, None]}]}
    moved = patch(resource, op("move", "Patient.name.given", source={"valueInteger": 1},
                               destination={"valueInteger": 0}))
    assert moved["name"][0]["_given"] == [extension, None, None]
    inserted = patch(resource, op("insert", "Patient.name.given", index={"valueInteger": 0},
                                  value={"valueString": "Z"}))
    assert inserted["name"][0]["_given"] == [None, None, extension, None]
    deleted = patch(resource, op("delete", "Patient.name.given[1]"),
                    op("delete", "Patient.birthDate"))
    assert deleted["name"][0] == {"given": ["A", "C"]}
    assert "_birthDate" not in deleted


def test_extension_ofType_and_contained_resources() -> None:
    resource = {"resourceType": "Patient",
                "extension": [{"url": "urn:a", "valueString": "a"},
                              {"url": "urn:b", "valueQuantity": {"value": 2}}],
                "contained": [{"resourceType": "Practitioner", "id": "p1",
                               "name": [{"family": "Old"}]}]}
    result = patch(resource,
                   op("delete", "Patient.extension('urn:a')"),
                   op("replace", "Patient.extension.value.ofType(Quantity).value",
                      value={"valueDecimal": 3}),
                   op("replace", "Patient.contained.where(id = 'p1').name.family",
                      value={"valueString": "New"}))
    assert result["extension"] == [{"url": "urn:b", "valueQuantity": {"value": 3}}]
    assert result["contained"][0]["name"] == [{"family": "New"}]


# --- bounds (fhir/patch/budget.py) ------------------------------------------------------


def test_too_many_operations_are_refused_before_any_runs() -> None:
    many = [op("add", "Patient.name[0]", name={"valueString": "given"},
               value={"valueString": "x"})] * 11
    with pytest.raises(Unprocessable, match="11 operations; at most 10") as raised:
        apply_fhirpath_patch(PATIENT, {"resourceType": "Parameters", "parameter": many},
                             PatchLimits(max_operations=10))
    assert raised.value.issues[0].expression == "Parameters.parameter"


def test_a_result_over_the_size_limit_is_refused_at_the_operation_that_passes_it() -> None:
    text = {"valueString": "x" * 400}
    operations = [op("add", "Patient.name[0]", name={"valueString": "given"}, value=text)] * 5
    size = len(orjson.dumps(PATIENT))
    with pytest.raises(Unprocessable, match="over the") as raised:
        apply_fhirpath_patch(PATIENT, {"resourceType": "Parameters", "parameter": operations},
                             PatchLimits(max_bytes=size + 1000))
    assert raised.value.issues[0].expression == "Parameters.parameter[2]"
    assert raised.value.issues[0].code == "too-costly"


def test_path_visits_are_bounded() -> None:
    resource = {"resourceType": "Patient",
                "identifier": [{"value": str(i)} for i in range(300)]}
    path = "Patient.identifier.where(value = 'none')"
    with pytest.raises(Unprocessable, match="visit more than 1,000 elements"):
        apply_fhirpath_patch(resource, {"resourceType": "Parameters",
                                        "parameter": [op("delete", path)] * 4},
                             PatchLimits(max_path_visits=1000))


# --- the oracle: locate() selects what FHIRPath (fhirpathpy) selects ---------------------

ORACLE_RESOURCE = {
    "resourceType": "Patient", "id": "p", "active": True,
    "name": [{"use": "official", "family": "A", "given": ["One", "Two"]},
             {"use": "nickname", "given": ["Nick"]},
             {"use": "old", "family": "B", "period": {"start": "2000-01-01"}}],
    "telecom": [{"system": "phone", "value": "1", "rank": 2},
                {"system": "email", "value": "a@b", "rank": 1}],
    "contact": [{"name": {"family": "C"}, "telecom": [{"system": "phone", "value": "2"}]}],
}
STEPS = st.sampled_from([
    "name", "given", "family", "use", "telecom", "system", "value", "rank", "contact",
    "period", "start", "[0]", "[1]", "[2]", "first()", "last()",
    "where(use = 'official')", "where(family.exists())", "where(rank > 1 or system = 'email')",
    "where(given.count() > 1)", "where($this = 'Two')", "where(family = 'A' and use != 'old')",
    "where(value.startsWith('a'))",
])


@settings(max_examples=150, deadline=None)
@given(st.lists(STEPS, min_size=1, max_size=4))
def test_locate_agrees_with_fhirpath(steps: list[str]) -> None:
    path = "Patient"
    for step in steps:
        path += step if step.startswith("[") else f".{step}"
    expected = fhirpathpy.evaluate(ORACLE_RESOURCE, path, model=models["r4"])
    assert [node.value for node in locate(ORACLE_RESOURCE, path)] == expected
