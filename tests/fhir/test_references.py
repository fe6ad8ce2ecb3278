from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hygeia.fhir.references import is_conditional_reference, rewrite_references


def test_rewrites_nested_references_and_leaves_others() -> None:
    resource = {"resourceType": "Observation",
                "subject": {"reference": "urn:uuid:a"},
                "performer": [{"reference": "Practitioner/1"}, {"reference": "urn:uuid:b"}],
                "note": [{"text": '"reference":"urn:uuid:a"'}]}
    mapping = {"urn:uuid:a": "Patient/1", "urn:uuid:b": "Practitioner/2"}
    result = rewrite_references(resource, mapping.get)
    assert result["subject"] == {"reference": "Patient/1"}
    assert result["performer"] == [{"reference": "Practitioner/1"},
                                   {"reference": "Practitioner/2"}]
    assert result["note"] == resource["note"]  # text that merely looks like a reference


def test_unchanged_resource_is_returned_as_is() -> None:
    resource = {"resourceType": "Patient", "link": [{"other": {"reference": "Patient/2"}}]}
    assert rewrite_references(resource, lambda _: None) is resource


def test_escaped_characters_survive() -> None:
    resource = {"resourceType": "Observation", "subject": {"reference": 'Patient?name=a"b\\c'}}
    seen: list[str] = []
    rewrite_references(resource, lambda ref: seen.append(ref) or None)
    assert seen == ['Patient?name=a"b\\c']


@given(st.text(max_size=20), st.text(max_size=20))
def test_any_reference_text_round_trips(reference: str, replacement: str) -> None:
    resource = {"resourceType": "Observation", "subject": {"reference": reference}}
    result = rewrite_references(resource, {reference: replacement}.get)
    assert result["subject"]["reference"] == replacement


def test_conditional_reference_shape() -> None:
    assert is_conditional_reference("Patient?identifier=x")
    assert not is_conditional_reference("http://example.org/fhir/Patient?x=1")
    assert not is_conditional_reference("Patient/1")
