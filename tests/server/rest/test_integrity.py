"""server/integrity.py: which references are local, the check a transaction runs before
commit, and the cascade's rounds and limit (on both backends)."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.outcome import BadRequest, Conflict, Gone, Unprocessable
from hygeia.server import FhirResponse, FhirService
from hygeia.server.context import Settings
from hygeia.server.extensions import Operation, OperationCall
from hygeia.server.rest import write
from hygeia.server.rest.integrity import (
    IntegrityCheck,
    LocalReference,
    cascade_requested,
    delete_referrers,
    local_references,
    local_target,
)
from hygeia.store import Repository
from tests.helpers import body, call, patient

BASE = "http://test/fhir/"  # the base tests.helpers.call gives every request


@pytest.mark.parametrize(("text", "expected"), [
    ("Patient/1", ("Patient", "1")),
    ("Patient/1/_history/3", ("Patient", "1")),
    (f"{BASE}Patient/1", ("Patient", "1")),
    ("http://other/fhir/Patient/1", None),
    ("#contained", None),
    ("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", None),
    ("Patient?identifier=a|b", None),
    ("NotAType/1", None),
])
def test_local_target(text: str, expected: tuple[str, str] | None) -> None:
    assert local_target(text, BASE) == expected


def test_local_references_name_their_location() -> None:
    resource = {"resourceType": "Observation", "subject": {"reference": "Patient/p"},
                "performer": [{"reference": "http://other/Practitioner/x"},
                              {"reference": "Practitioner/y"}],
                "contained": [{"resourceType": "Provenance",
                               "target": [{"reference": "Patient/q"}]}],
                "focus": [{"reference": "#c"}]}
    assert local_references(resource, BASE) == [
        LocalReference(("Patient", "p"), "Patient/p", "Observation.subject"),
        LocalReference(("Practitioner", "y"), "Practitioner/y", "Observation.performer[1]"),
        LocalReference(("Patient", "q"), "Patient/q", "Observation.contained[0].target[0]"),
    ]


def test_cascade_requested() -> None:
    assert cascade_requested([("x", "1")], enforced=False) is False
    assert cascade_requested([("_cascade", "delete")], enforced=True) is True
    with pytest.raises(BadRequest):
        cascade_requested([("_cascade", "delete")], enforced=False)
    with pytest.raises(BadRequest):
        cascade_requested([("_cascade", "all")], enforced=True)


@pytest.fixture
def strict(repository: Repository) -> FhirService:
    return FhirService(repository, Settings(referential_integrity=True))


def observation(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": subject}}


def test_the_check_sees_its_own_transaction(strict: FhirService) -> None:
    """A resource written earlier in the same transaction resolves; one deleted in it
    does not."""
    check = IntegrityCheck(BASE)
    with strict.transaction(integrity=check) as session:
        write.update(session, "Patient", "same-tx", {**patient(), "id": "same-tx"})
        write.create(session, "Observation", observation("Patient/same-tx"))
    check = IntegrityCheck(BASE)
    with pytest.raises(Unprocessable, match="was deleted"), \
            strict.transaction(integrity=check) as session:
        write.delete(session, "Patient", "same-tx")
        write.create(session, "Observation", observation("Patient/same-tx"))


def test_a_delete_with_referrers_is_refused_and_names_them(strict: FhirService) -> None:
    subject = body(call(strict, "POST", "Patient", patient()))["id"]
    referrers = {body(call(strict, "POST", "Observation", observation(f"Patient/{subject}"))
                      )["id"] for _ in range(7)}
    with pytest.raises(Conflict) as refused:
        call(strict, "DELETE", f"Patient/{subject}")
    message = refused.value.issues[0].diagnostics
    assert sum(f"Observation/{id}" in message for id in referrers) == 5
    assert "and more" in message
    assert call(strict, "GET", f"Patient/{subject}").status == 200


def test_cascade_takes_several_rounds_when_cut_short(strict: FhirService) -> None:
    """A round whose (referrer, target) pairs reach its limit asks again for the same
    targets: three groups each refer to all three members of the patient, so the
    second round's 4 pairs (6 - 3 deleted + 1) name only two groups."""
    subject = body(call(strict, "POST", "Patient", patient()))["id"]
    members = [body(call(strict, "POST", "Observation", observation(f"Patient/{subject}"))
                    )["id"] for _ in range(3)]
    group = {"resourceType": "Observation", "status": "final", "code": {"text": "group"},
             "hasMember": [{"reference": f"Observation/{id}"} for id in members]}
    groups = [body(call(strict, "POST", "Observation", group))["id"] for _ in range(3)]
    with strict.transaction(integrity=IntegrityCheck(BASE)) as session:
        write.delete(session, "Patient", subject)
        assert delete_referrers(session, ("Patient", subject), BASE, limit=6) == 6
    for id in groups:
        with pytest.raises(Gone):
            call(strict, "GET", f"Observation/{id}")


def test_cascade_beyond_its_limit_deletes_nothing(strict: FhirService) -> None:
    subject = body(call(strict, "POST", "Patient", patient()))["id"]
    for _ in range(3):
        call(strict, "POST", "Observation", observation(f"Patient/{subject}"))
    with pytest.raises(Unprocessable, match="more than 2") as refused, \
            strict.transaction(integrity=IntegrityCheck(BASE)) as session:
        write.delete(session, "Patient", subject)
        delete_referrers(session, ("Patient", subject), BASE, limit=2)
    assert refused.value.issues[0].code == "too-costly"
    assert call(strict, "GET", f"Patient/{subject}").status == 200


def test_loads_and_other_transactions_are_not_checked(strict: FhirService) -> None:
    """Without an IntegrityCheck (hygeia load, $import) a dangling reference is stored."""
    with strict.transaction() as session:
        response = write.create(session, "Observation", observation("Patient/not-yet"))
    assert response.status == 201


def _refer_to_target(call_: OperationCall) -> FhirResponse:
    """A pillar's write operation: stores an Observation about the instance it is called on."""
    assert call_.session is not None
    return write.create(call_.session, "Observation", observation(f"Patient/{call_.id}"),
                        base_url=call_.request.base_url)


def test_operations_that_write_are_checked(strict: FhirService) -> None:
    strict.operations.register(Operation(
        "refer", _refer_to_target, "urn:test:OperationDefinition:refer",
        instances=frozenset({"Patient"}), session="write", access="c"))
    subject = body(call(strict, "POST", "Patient", patient()))["id"]
    assert call(strict, "POST", f"Patient/{subject}/$refer", {}).status == 201
    with pytest.raises(Unprocessable, match="Patient/nobody"):
        call(strict, "POST", "Patient/nobody/$refer", {})
