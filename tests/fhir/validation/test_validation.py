"""The public API on real data: Synthea bundles clean, the invalid corpus caught."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from hygeia.fhir.outcome import Unprocessable
from hygeia.fhir.validation import validate, validate_or_raise

FIXTURES = Path(__file__).parent.parent.parent / "fixtures"
SYNTHEA = sorted((FIXTURES / "synthea").glob("*.json.gz"))
INVALID = FIXTURES / "invalid"
EXPECTED: dict[str, str | None] = json.loads((INVALID / "expected.json").read_text())


def load_bundle(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        bundle: dict[str, Any] = json.load(handle)
    return bundle


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name[:3])
def test_every_synthea_resource_is_valid(path: Path) -> None:
    bundle = load_bundle(path)
    problems = {}
    for index, entry in enumerate(bundle["entry"]):
        issues = validate(entry["resource"], entry["resource"]["resourceType"])
        if issues:
            problems[index] = [(i.expression, i.diagnostics) for i in issues]
    assert problems == {}
    assert validate(bundle, "Bundle") == []


def test_fixtures_are_present() -> None:
    assert len(SYNTHEA) >= 2
    assert len(EXPECTED) >= 70
    assert sorted(EXPECTED) == sorted(
        p.name for p in INVALID.glob("*.json") if p != INVALID / "expected.json"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_corpus_is_caught_at_the_right_place(name: str) -> None:
    resource = json.loads((INVALID / name).read_text())
    issues = validate(resource)
    assert issues, f"{name} passed validation"
    assert EXPECTED[name] in [issue.expression for issue in issues], issues


def test_validate_or_raise() -> None:
    validate_or_raise({"resourceType": "Patient", "gender": "male"}, "Patient")
    with pytest.raises(Unprocessable) as caught:
        validate_or_raise({"resourceType": "Patient", "gender": "x", "foo": 1})
    assert caught.value.status == 422
    assert [issue.expression for issue in caught.value.issues] == ["Patient.gender", "Patient.foo"]


def test_all_problems_are_reported_not_just_the_first() -> None:
    issues = validate(
        {"resourceType": "Observation", "valueInteger": "1", "subject": {"reference": "x y"}}
    )
    assert sorted(i.expression or "" for i in issues) == [
        "Observation.code",
        "Observation.status",
        "Observation.subject.reference",
        "Observation.valueInteger",
    ]


@pytest.mark.parametrize(
    ("expected_type", "valid"),
    [("Patient", True), ("Observation", False), ("Resource", True), ("DomainResource", True)],
)
def test_expected_type(expected_type: str, valid: bool) -> None:
    issues = validate({"resourceType": "Patient"}, expected_type)
    assert (issues == []) is valid
    if not valid:
        assert issues[0].code == "invalid"


def test_bundle_is_not_a_domain_resource() -> None:
    assert validate({"resourceType": "Bundle", "type": "collection"}, "DomainResource")


@pytest.mark.parametrize("value", [None, [], "Patient", 3, {"resourceType": 3}, {}])
def test_not_a_resource(value: Any) -> None:
    issues = validate(value)
    assert len(issues) == 1
    assert issues[0].code == "structure"


def test_deep_nesting_is_an_issue_not_a_crash() -> None:
    extension: dict[str, Any] = {"url": "u", "valueString": "x"}
    for _ in range(5000):
        extension = {"url": "u", "extension": [extension]}
    issues = validate({"resourceType": "Patient", "extension": [extension]})
    assert [issue.code for issue in issues] == ["too-costly"]


def test_issues_serialise_as_operation_outcome_issues() -> None:
    (issue,) = validate({"resourceType": "Patient", "birthDate": "1980-02-30"})
    assert issue.to_fhir() == {
        "severity": "error",
        "code": "value",
        "diagnostics": "'1980-02-30' is not a valid date: there is no such day",
        "expression": ["Patient.birthDate"],
    }
