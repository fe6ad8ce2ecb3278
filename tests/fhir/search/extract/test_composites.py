from __future__ import annotations

from hygeia.fhir.search.extract import extract_parameter
from hygeia.fhir.search.extract.composites import CompositeSet
from hygeia.fhir.search.parameters import SearchParameter, default_registry
from hygeia.fhir.search.rows import IndexRows

LOINC = "http://loinc.org"


def composite(code: str) -> SearchParameter:
    param = default_registry().get("Observation", code)
    assert param is not None
    return param


def test_one_parameter_alone_numbers_its_own_groups() -> None:
    resource = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 1},
        "code": {"coding": [{"system": LOINC, "code": "a"}]},
        "component": [{"code": {"coding": [{"code": "b"}]}, "valueQuantity": {"value": 2}}, "junk"],
    }
    rows = extract_parameter(resource, composite("combo-code-value-quantity"))
    assert set(rows.composites) == {
        ("combo-code-value-quantity", 0, 0, (LOINC, "a")),
        ("combo-code-value-quantity", 0, 1, (1.0, 1.0, None, None, None)),
        ("combo-code-value-quantity", 1, 0, (None, "b")),
        ("combo-code-value-quantity", 1, 1, (2.0, 2.0, None, None, None)),
    }


def test_a_set_shares_roots_and_components_between_parameters() -> None:
    params = [
        composite("code-value-quantity"),
        composite("combo-code-value-quantity"),
        composite("code-value-concept"),
    ]
    run = CompositeSet(params, "Observation").runner()
    assert run is not None
    rows = IndexRows()
    run(
        {
            "resourceType": "Observation",
            "code": {"coding": [{"code": "a"}, {"code": "b"}]},
            "valueCodeableConcept": {"coding": [{"code": "yes"}]},
        },
        rows,
    )
    assert set(rows.composites) == {
        ("code-value-concept", 0, 0, (None, "a")),
        ("code-value-concept", 0, 0, (None, "b")),
        ("code-value-concept", 0, 1, (None, "yes")),
    }


def test_an_empty_set_has_no_runner() -> None:
    assert CompositeSet([], "Observation").runner() is None
    assert CompositeSet([composite("code-value-quantity")], "Patient").runner() is None


def test_document_reference_relationship_reads_target_and_code() -> None:
    param = default_registry().get("DocumentReference", "relationship")
    assert param is not None
    resource = {
        "resourceType": "DocumentReference",
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/old"}}],
    }
    rows = extract_parameter(resource, param)
    assert set(rows.composites) == {
        ("relationship", 0, 0, ("DocumentReference", "old", None, None)),
        ("relationship", 0, 1, (None, "replaces")),
    }
