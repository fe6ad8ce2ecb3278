from __future__ import annotations

import pytest

from hygeia.fhir.search.extract.expression import Path, Unsupported, parse_expression
from hygeia.fhir.search.extract.paths import (
    Branch,
    Equals,
    Key,
    Nth,
    ResourceIs,
    TargetIs,
    expand,
    is_subtype,
)


def branches(text: str, context: str) -> list[tuple[tuple[object, ...], str]]:
    (path,) = parse_expression(text)
    assert isinstance(path, Path)
    return [(branch.ops, branch.type) for branch in expand(path, context)]


def test_choice_element_expands_to_every_concrete_key() -> None:
    found: dict[str, str] = {}
    for ops, kind in branches("Observation.value", "Observation"):
        assert len(ops) == 1 and isinstance(ops[0], Key)
        found[ops[0].name] = kind
    assert found["valueQuantity"] == "Quantity"
    assert found["valueCodeableConcept"] == "CodeableConcept"
    assert found["valueString"] == "string"
    assert len(found) == 11


def test_as_keeps_one_branch() -> None:
    assert branches("(Observation.value as Quantity)", "Observation") == [
        ((Key("valueQuantity"),), "Quantity")
    ]
    assert branches("Condition.onset.as(Age)", "Condition") == [((Key("onsetAge"),), "Age")]


def test_exact_type_wins_over_subtypes() -> None:
    assert branches("(ConceptMap.source as uri)", "ConceptMap") == [((Key("sourceUri"),), "uri")]
    assert branches("(ConceptMap.source as canonical)", "ConceptMap") == [
        ((Key("sourceCanonical"),), "canonical")
    ]


def test_subtypes() -> None:
    assert is_subtype("Age", "Quantity") and is_subtype("code", "string")
    assert is_subtype("Patient", "Resource")
    assert not is_subtype("Quantity", "Age")


def test_types_follow_backbone_elements_and_resource_roots() -> None:
    assert branches("Patient.contact.name.family", "Patient") == [
        ((Key("contact"), Key("name"), Key("family")), "string")
    ]
    assert branches("Resource.meta.tag", "Encounter") == [((Key("meta"), Key("tag")), "Coding")]


def test_runtime_filters_stay_on_the_branch() -> None:
    assert branches("Patient.telecom.where(system='phone')", "Patient") == [
        ((Key("telecom"), Equals("system", "phone")), "ContactPoint")
    ]
    assert branches("Observation.subject.where(resolve() is Patient)", "Observation") == [
        ((Key("subject"), TargetIs("Patient")), "Reference")
    ]
    assert branches("Bundle.entry[0].resource", "Bundle") == [
        ((Key("entry"), Nth(0), Key("resource")), "Resource")
    ]


def test_resource_typed_elements() -> None:
    assert branches("Bundle.entry.resource.ofType(Patient)", "Bundle") == [
        ((Key("entry"), Key("resource"), ResourceIs("Patient")), "Patient")
    ]
    (path,) = parse_expression("Bundle.entry.resource.id")
    assert isinstance(path, Path)
    with pytest.raises(Unsupported):
        expand(path, "Bundle")


def test_unknown_elements_give_no_branch() -> None:
    assert branches("Patient.nothing.here", "Patient") == []
    assert expand(Path("Patient", ()), "Patient") == [Branch((), "Patient")]
