"""The shipped R4 definitions load from package data and say what the spec says."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest

from hygeia.fhir import spec
from hygeia.fhir.spec.logical import installed_resource_types


def test_resource_types_are_the_concrete_r4_resources() -> None:
    types = spec.resource_types()
    assert {"Patient", "Observation", "Bundle", "Parameters", "Binary"} <= types
    assert not {"Resource", "DomainResource", "HumanName", "Patient.contact"} & types
    assert len(types) >= 145


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Patient", True),
        ("Questionnaire", True),
        ("patient", False),
        ("HumanName", False),
        ("", False),
        ("Resource", False),
    ],
)
def test_is_resource_type(name: str, expected: bool) -> None:
    assert spec.is_resource_type(name) is expected


def test_domain_resources_exclude_the_three_bare_resources() -> None:
    domain = spec.domain_resource_types()
    assert "Patient" in domain
    assert not {"Bundle", "Binary", "Parameters"} & domain


def elements(type_name: str) -> dict[str, dict]:
    return {element["n"]: element for element in spec.type_definitions()[type_name]["elements"]}


def test_backbone_elements_are_anonymous_types_named_by_path() -> None:
    patient = elements("Patient")
    assert patient["contact"]["t"] == "Patient.contact"
    assert patient["contact"]["max"] == "*"
    assert elements("Patient.link")["other"]["min"] == 1


def test_content_reference_points_at_the_referenced_backbone() -> None:
    assert elements("Questionnaire.item")["item"]["t"] == "Questionnaire.item"
    assert elements("Bundle.entry")["link"]["t"] == "Bundle.link"


def test_choice_elements_list_their_concrete_json_keys() -> None:
    deceased = elements("Patient")["deceased"]
    assert deceased["x"] == {"deceasedBoolean": "boolean", "deceasedDateTime": "dateTime"}
    assert "valueCodeableConcept" in elements("Observation")["value"]["x"]


def test_reference_targets_are_resource_type_names() -> None:
    assert elements("Patient")["managingOrganization"]["t"] == ["Reference", ["Organization"]]
    assert elements("Observation")["subject"]["t"][1] == ["Device", "Group", "Location", "Patient"]


def test_resource_id_is_an_id_and_element_id_a_string() -> None:
    assert elements("Patient")["id"]["t"] == "id"
    assert elements("HumanName")["id"] == {"n": "id", "t": "string", "attr": 1}


def test_simple_quantity_forbids_comparator() -> None:
    assert "comparator" in elements("Quantity")
    assert "comparator" not in elements("SimpleQuantity")


def test_primitives_carry_json_kind_and_regex() -> None:
    primitives = spec.primitive_types()
    assert primitives["positiveInt"]["kind"] == "integer"
    assert primitives["positiveInt"]["min"] == 1
    assert primitives["integer"]["max"] == 2**31 - 1
    assert primitives["decimal"]["kind"] == "number"
    assert primitives["boolean"]["kind"] == "boolean"
    assert primitives["date"]["regex"].startswith("([0-9]")
    assert primitives["string"]["maxLength"] == 1024 * 1024


def test_required_bindings_are_expanded() -> None:
    assert spec.value_set_codes("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1") == {
        "male",
        "female",
        "other",
        "unknown",
    }
    assert (
        elements("Patient")["gender"]["vs"] == "http://hl7.org/fhir/ValueSet/administrative-gender"
    )
    # BCP-13 mime types cannot be enumerated from the bundle, so they are not guessed at
    assert spec.value_set_codes("http://hl7.org/fhir/ValueSet/mimetypes") is None
    assert "vs" not in elements("Attachment")["contentType"]


def _r4_only(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The R4 parameters: without those of installed logical types (ViewDefinition ...)."""
    logical = {declared.name for declared in installed_resource_types()}
    return [p for p in params if not set(p["base"]) & logical]


def test_search_parameters_are_complete_and_compact() -> None:
    params = spec.search_parameters()
    assert len(_r4_only(params)) == 1378
    by_key = {(p["code"], base): p for p in params for base in p["base"]}
    birthdate = by_key[("birthdate", "Patient")]
    assert birthdate["type"] == "date"
    assert "Patient.birthDate" in birthdate["expression"]
    combo = by_key[("code-value-quantity", "Observation")]
    assert [c["code"] for c in combo["component"]] == ["code", "value-quantity"]
    assert "Patient" in by_key[("subject", "Observation")]["target"]


def test_search_parameters_returns_a_new_list() -> None:
    spec.search_parameters().clear()
    assert len(_r4_only(spec.search_parameters())) == 1378


def test_patient_compartment() -> None:
    compartment = spec.patient_compartment()
    assert "subject" in compartment["Observation"]
    assert compartment["Patient"] == ["link"]
    assert "Organization" not in compartment


def test_generated_data_is_small() -> None:
    folder = files("hygeia.fhir.spec").joinpath("_generated")
    total = sum(len(item.read_bytes()) for item in folder.iterdir())
    assert total < 1_500_000
