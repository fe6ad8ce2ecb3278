"""The compiled per-type lookups the walker runs on."""

from __future__ import annotations

from hygeia.fhir.validation.rules import (
    COMPLEX,
    CONTAINED,
    PRIMITIVE,
    PRIMITIVE_EXTENSION,
    REFERENCE,
    RESOURCE,
    RESOURCE_TYPE,
    STRING,
    compiled_types,
    resource_rules,
)


def test_compiled_once() -> None:
    assert compiled_types() is compiled_types()


def test_patient_fields() -> None:
    fields = resource_rules()["Patient"].fields
    assert fields["resourceType"][0] == RESOURCE_TYPE
    assert fields["birthDate"][0] == STRING
    assert fields["_birthDate"][0] == PRIMITIVE_EXTENSION
    assert fields["active"][0] == PRIMITIVE
    assert fields["name"][:2] == (COMPLEX, True)
    assert fields["contained"][0] == CONTAINED
    assert fields["managingOrganization"][0] == REFERENCE
    assert fields["managingOrganization"][4] == frozenset({"Organization"})
    assert fields["deceasedDateTime"][5] == ("deceased", "deceasedDateTime")
    assert fields["_deceasedDateTime"][5] == ("deceased", "deceasedDateTime")
    assert "deceased" not in fields
    assert fields["gender"][4] == frozenset({"male", "female", "other", "unknown"})


def test_attributes_have_no_extension_twin() -> None:
    extension = compiled_types()["Extension"].fields
    assert "url" in extension
    assert "_url" not in extension
    assert "_id" not in compiled_types()["HumanName"].fields
    assert "_div" not in compiled_types()["Narrative"].fields


def test_required_elements_include_choice_variants_and_twins() -> None:
    required = dict(compiled_types()["Immunization"].required)
    assert "occurrenceDateTime" in required["occurrence"]
    assert "_occurrenceDateTime" in required["occurrence"]
    assert required["status"] == ("status", "_status")


def test_nested_resources() -> None:
    entry = compiled_types()["Bundle.entry"].fields
    assert entry["resource"][0] == RESOURCE
    assert (
        compiled_types()["Questionnaire.item"].fields["item"][3]
        is compiled_types()["Questionnaire.item"]
    )
