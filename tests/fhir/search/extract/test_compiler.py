from __future__ import annotations

import pytest

from hygeia.fhir.search.extract import compile_parameter, extract_index, fallback_parameters
from hygeia.fhir.search.extract.compiler import compile_members
from hygeia.fhir.search.extract.fallback import guess_type
from hygeia.fhir.search.extract.plan import param_plan
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry, default_registry

# Official R4 parameters that need the fhirpathpy fallback (reported to the lead).
EXPECTED_FALLBACKS: list[tuple[str, str]] = []


def official() -> list[tuple[str, SearchParameter]]:
    registry = default_registry()
    return [
        (kind, param)
        for kind in registry.types()
        for param in registry.for_type(kind).values()
        if param.indexed
    ]


def test_every_official_parameter_compiles_without_the_fallback() -> None:
    pairs = official()
    assert len(pairs) > 2500
    for kind, param in pairs:
        param_plan(param, kind)
    assert fallback_parameters() == EXPECTED_FALLBACKS


def test_every_official_expression_selects_something_for_each_base() -> None:
    """No member silently resolves to nothing (a misspelt element would)."""
    empty = [
        (kind, param.code)
        for kind, param in official()
        if not compile_members(param.expression or "", kind, param.type)
    ]
    assert empty == []


def test_compile_parameter_returns_typed_values() -> None:
    registry = default_registry()
    value = registry.get("Observation", "value-quantity")
    assert value is not None
    quantity = {"value": 1, "unit": "kg"}
    extract = compile_parameter(value)
    assert extract({"resourceType": "Observation", "valueQuantity": quantity}) == [
        (quantity, "Quantity")
    ]
    assert extract({"resourceType": "Observation", "valueString": "x"}) == []
    assert extract({"resourceType": "Nope"}) == []
    assert compile_parameter(value) is extract  # compiled once


def test_compile_parameter_of_a_composite_returns_its_roots() -> None:
    param = default_registry().get("Observation", "component-code-value-quantity")
    assert param is not None
    component = {"code": {"text": "x"}}
    resource = {"resourceType": "Observation", "component": [component]}
    assert compile_parameter(param)(resource) == [(component, "Observation.component")]


def test_unsupported_fhirpath_falls_back_to_fhirpathpy() -> None:
    pytest.importorskip("fhirpathpy")
    registry = SearchRegistry()
    custom = SearchParameter(
        url="http://x.org/SearchParameter/official-family",
        code="official-family",
        base=("Patient",),
        type="string",
        expression="Patient.name.where(use = 'official').select(family)",
    )
    registry.add(custom)
    assert fallback_parameters(registry) == [("Patient", "official-family")]
    rows = extract_index(
        {
            "resourceType": "Patient",
            "name": [{"use": "official", "family": "Doe"}, {"use": "nickname", "family": "Jo"}],
        },
        registry,
    )
    assert rows.strings == [("official-family", "doe", "Doe")]
    assert compile_parameter(custom)(
        {"resourceType": "Patient", "name": [{"use": "official", "family": "Doe"}]}
    ) == [("Doe", "string")]


def test_fallback_errors_yield_no_values() -> None:
    pytest.importorskip("fhirpathpy")
    registry = SearchRegistry()
    registry.add(
        SearchParameter(
            url="u",
            code="broken",
            base=("Patient",),
            type="token",
            expression="Patient.name.single().family.toInteger() / 0",
        )
    )
    assert (
        extract_index({"resourceType": "Patient", "name": [{"family": "a"}, {}]}, registry).tokens
        == []
    )


@pytest.mark.parametrize(
    ("value", "param_type", "expected"),
    [
        (True, "token", "boolean"),
        (1, "number", "integer"),
        (1.5, "number", "decimal"),
        ("2020", "date", "dateTime"),
        ("x", "token", "code"),
        ("x", "string", "string"),
        ({"coding": []}, "token", "CodeableConcept"),
        ({"reference": "Patient/1"}, "reference", "Reference"),
        ({"value": 1, "currency": "EUR"}, "quantity", "Money"),
        ({"value": 1, "unit": "kg"}, "quantity", "Quantity"),
        ({"start": "2020"}, "date", "Period"),
        ({"family": "x"}, "string", "HumanName"),
        ({"city": "x"}, "string", "Address"),
        ({"system": "phone", "value": "1"}, "token", "ContactPoint"),
        ({"system": "s", "code": "c"}, "token", "Coding"),
        ({"system": "s", "value": "v"}, "token", "Identifier"),
        ({"resourceType": "Patient"}, "reference", "Patient"),
    ],
)
def test_guess_type(value: object, param_type: str, expected: str) -> None:
    assert guess_type(value, param_type) == expected
