"""The guard with v2 granular scopes (``?category=``), on both backends.

The scope matrix (tests/api/test_scope_matrix.py) covers patients, users and
systems over HTTP; this covers what a constraint allows: searches narrowed to
it, reads outside it hidden, writes that would leave it refused and rolled back.
"""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.outcome import Forbidden, NotFound
from hygeia.server import FhirService
from hygeia.server.auth.access import Access
from hygeia.server.auth.scopes import Scopes
from tests.helpers import body, call

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _observation(id: str, category: str, patient: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"text": category}, "subject": {"reference": f"Patient/{patient}"}}


@pytest.fixture
def data(service: FhirService) -> FhirService:
    call(service, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"})
    call(service, "PUT", "Patient/p2", {"resourceType": "Patient", "id": "p2"})
    for id, category, patient in (("lab", "laboratory", "p1"), ("vital", "vital-signs", "p1"),
                                  ("social", "social-history", "p1"),
                                  ("other-lab", "laboratory", "p2")):
        call(service, "PUT", f"Observation/{id}", _observation(id, category, patient))
    return service


def _token(scopes: str, patient: str | None = "p1") -> Access:
    return Access("app", Scopes.parse(scopes), "someone", patient=patient)


def _ids(response: Any) -> set[str]:
    return {entry["resource"]["id"] for entry in body(response).get("entry", [])}


def test_a_constrained_scope_narrows_search_and_read(data: FhirService) -> None:
    access = _token(f"patient/Observation.rs?category={CATEGORY}|laboratory")
    assert _ids(call(data, "GET", "Observation", access=access)) == {"lab"}
    assert call(data, "GET", "Observation/lab", access=access).status == 200
    with pytest.raises(NotFound):
        call(data, "GET", "Observation/vital", access=access)
    with pytest.raises(NotFound):  # the right category, the wrong patient
        call(data, "GET", "Observation/other-lab", access=access)


def test_two_constraints_on_one_parameter_are_either(data: FhirService) -> None:
    access = _token("patient/Observation.rs?category=laboratory "
                    "patient/Observation.rs?category=vital-signs")
    assert _ids(call(data, "GET", "Observation", access=access)) == {"lab", "vital"}
    everything = _token("patient/Observation.rs?category=laboratory patient/Observation.rs")
    assert _ids(call(data, "GET", "Observation", access=everything)) == {
        "lab", "vital", "social"}


def test_a_write_must_stay_inside_the_constraint(data: FhirService) -> None:
    access = _token("patient/Observation.rs patient/Observation.cu?category=vital-signs")
    created = call(data, "POST", "Observation", _observation("x", "vital-signs"),
                   access=access)
    assert created.status == 201
    with pytest.raises(Forbidden):
        call(data, "POST", "Observation", _observation("y", "laboratory"), access=access)
    with pytest.raises(Forbidden):  # an existing lab result may not be turned into vitals
        call(data, "PUT", "Observation/lab", _observation("lab", "vital-signs"), access=access)
    with pytest.raises(Forbidden):  # nor a vital sign into something else
        call(data, "PUT", "Observation/vital", _observation("vital", "laboratory"),
             access=access)
    seen = _ids(call(data, "GET", "Observation", query=[("category", "laboratory")]))
    assert seen == {"lab", "other-lab"}  # the refused writes left no trace


def test_a_refused_transaction_entry_rolls_back_the_whole_bundle(data: FhirService) -> None:
    access = _token("patient/Observation.cu patient/Observation.rs")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _observation("a", "laboratory", "p1"),
         "request": {"method": "PUT", "url": "Observation/a"}},
        {"resource": _observation("b", "laboratory", "p2"),
         "request": {"method": "PUT", "url": "Observation/b"}}]}
    with pytest.raises(Forbidden):
        call(data, "POST", "", bundle, access=access)
    assert call(data, "GET", "Observation", query=[("_id", "a,b")]).status == 200
    assert _ids(call(data, "GET", "Observation", query=[("_id", "a,b")])) == set()


def test_a_user_who_is_a_patient_sees_only_their_own(data: FhirService) -> None:
    access = Access("app", Scopes.parse("user/*.rs"), "pat", fhir_user="Patient/p2")
    assert _ids(call(data, "GET", "Observation", access=access)) == {"other-lab"}


def test_types_outside_the_compartment_are_closed_to_patient_tokens(
        data: FhirService) -> None:
    access = _token("patient/*.rs")
    call(data, "PUT", "Binary/b1", {"resourceType": "Binary", "id": "b1",
                                    "contentType": "text/plain"})
    with pytest.raises(Forbidden):
        call(data, "GET", "Binary/b1", access=access)
    with pytest.raises(Forbidden):  # AuditEvent is never reached by a wildcard
        call(data, "GET", "AuditEvent", access=access)
