"""Reference.reference shapes and target types (references.html)."""

from __future__ import annotations

import pytest

from hygeia.fhir.validation.references import reference_problem

PATIENT_OR_GROUP = frozenset({"Patient", "Group"})


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/123",
        "Patient/a.b-C",
        "Group/1/_history/2",
        "Patient?identifier=http://example.org|123",
        "#",
        "#contained-1",
        "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
        "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
        "urn:oid:1.2.840.113619",
        "http://example.org/fhir/Patient/123",
        "https://example.org/fhir/Observation/1",
        "urn:isbn:0451450523",
    ],
)
def test_valid_shapes(reference: str) -> None:
    assert reference_problem(reference, PATIENT_OR_GROUP) is None


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/",
        "Patient",
        "/Patient/1",
        "Patient/1/2",
        "Patient/has space",
        "Patient/" + "x" * 65,
        "patient/1",
        "#bad id",
        "urn:uuid:123",
        "urn:oid:1.02",
        "http://example.org/a b",
        "1234",
    ],
)
def test_invalid_shapes(reference: str) -> None:
    problem = reference_problem(reference, PATIENT_OR_GROUP)
    assert problem is not None
    assert problem[0] == "value"


def test_unknown_resource_type() -> None:
    problem = reference_problem("Patientx/1", None)
    assert problem is not None
    assert "unknown resource type" in problem[1]


def test_target_type_must_be_allowed() -> None:
    problem = reference_problem("Observation/1", PATIENT_OR_GROUP)
    assert problem is not None
    assert problem[0] == "invalid"
    assert "Group, Patient" in problem[1]
    assert reference_problem("Observation?code=1", PATIENT_OR_GROUP) is not None


def test_any_target_when_the_element_allows_any_resource() -> None:
    assert reference_problem("Observation/1", None) is None


def _reference_issues(resource: dict[str, object]) -> list[tuple[str, str | None]]:
    from hygeia.fhir.validation import validate

    return [(issue.diagnostics, issue.expression)
            for issue in validate(resource, str(resource["resourceType"]))]


def test_a_remembered_reference_is_still_checked_against_each_elements_targets() -> None:
    """Valid references are remembered per set of allowed target types: the same
    ``Patient/x`` accepted in ``subject`` is still refused where no Patient may go."""
    subject = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Patient/remembered-1"}}
    wrong = {**subject, "specimen": {"reference": "Patient/remembered-1"}}
    for _ in range(3):
        assert _reference_issues(subject) == []
        issues = _reference_issues(wrong)
        assert len(issues) == 1 and issues[0][1] == "Observation.specimen.reference"
        assert "Patient" in issues[0][0]


def test_local_references_are_never_remembered() -> None:
    contained = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                 "contained": [{"resourceType": "Patient", "id": "p"}],
                 "subject": {"reference": "#p"}}
    alone = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "subject": {"reference": "#p"}}
    for _ in range(3):
        assert _reference_issues(contained) == []
        assert [where for _, where in _reference_issues(alone)] == [
            "Observation.subject.reference"]


def test_remembered_references_are_bounded() -> None:
    from hygeia.fhir.validation.references import KnownReferences

    memo = KnownReferences()
    for number in range(KnownReferences.LIMIT + 10):
        assert memo.learn(PATIENT_OR_GROUP, f"Patient/{number}")
    assert len(memo) <= KnownReferences.LIMIT
    assert not memo.learn(PATIENT_OR_GROUP, "Observation/1")
    assert memo.learn(None, "Patient/" + "x" * 64 + "/_history/1")  # valid, too long to keep
    assert (None, "Patient/" + "x" * 64 + "/_history/1") not in memo
