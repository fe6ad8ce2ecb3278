"""An operation registered as a pillar registers it: one registration routes it, gives
it its session, audits it and lists it in the CapabilityStatement and OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hygeia.fhir.outcome import FhirError, MethodNotAllowed, NotFound, Unprocessable
from hygeia.server import AuditSettings, FhirResponse, FhirService, JobSettings, Settings
from hygeia.server.extensions import Operation, OperationCall
from hygeia.server.rest.operations import DuplicateOperation, OperationRegistry
from hygeia.store import HistoryQuery, Repository
from tests.helpers import body, call, patient


def _count_patients(call_: OperationCall) -> FhirResponse:
    """A read operation: how many Patients the session sees, and where it was called."""
    assert call_.session is not None
    page = call_.session.history(HistoryQuery(resource_type="Patient", count=1000))
    return FhirResponse(200, resource={"resourceType": "Parameters", "parameter": [
        {"name": "count", "valueInteger": len({v.id for v in page})},
        {"name": "level", "valueString": call_.level},
        {"name": "target", "valueString": f"{call_.resource_type}/{call_.id}"}]})


def _tag_patient(call_: OperationCall) -> FhirResponse:
    """A write operation: stores an Observation about the patient, then maybe fails."""
    assert call_.session is not None and call_.id is not None
    from hygeia.server.rest import write

    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"text": "tagged"}, "subject": {"reference": f"Patient/{call_.id}"}}
    created = write.create(call_.session, "Observation", observation,
                           base_url=call_.request.base_url)
    if isinstance(call_.request.body, dict) and call_.request.body.get("fail"):
        raise Unprocessable("Asked to fail after writing.", expression="fail")
    return created


COUNT = Operation("count-patients", _count_patients, "urn:test:OperationDefinition:count",
                  system=True, instances=frozenset({"Patient"}), methods=("GET",),
                  session="read", documentation="Count patients.")
TAG = Operation("tag", _tag_patient, "urn:test:OperationDefinition:tag",
                instances=frozenset({"Patient"}), methods=("POST",), session="write",
                access="c", records_query=False)


@pytest.fixture
def pillar_service(repository: Repository, tmp_path: Path) -> Iterator[FhirService]:
    service = FhirService(repository, Settings(audit=AuditSettings(enabled=True),
                                                jobs=JobSettings(files_dir=str(tmp_path / "f"))))
    service.operations.register(COUNT)
    service.operations.register(TAG)
    yield service
    service.close()


def _parameters(response: FhirResponse) -> dict[str, Any]:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
            for p in body(response)["parameter"]}


def test_a_registered_operation_is_routed_at_every_level_it_declares(
        pillar_service: FhirService) -> None:
    created = body(call(pillar_service, "POST", "Patient", patient()))
    system = _parameters(call(pillar_service, "GET", "$count-patients"))
    instance = _parameters(call(pillar_service, "GET", f"Patient/{created['id']}/$count-patients"))
    assert (system["count"], system["level"]) == (1, "system")
    assert (instance["level"], instance["target"]) == ("instance", f"Patient/{created['id']}")
    with pytest.raises(NotFound) as refused:  # not declared at the type level
        call(pillar_service, "GET", "Patient/$count-patients")
    assert "It is offered on [base] and Patient/[id]." in refused.value.issues[0].diagnostics
    with pytest.raises(MethodNotAllowed):
        call(pillar_service, "POST", "$count-patients", {})


def test_a_write_operation_commits_with_its_transaction_or_not_at_all(
        pillar_service: FhirService) -> None:
    created = body(call(pillar_service, "POST", "Patient", patient()))
    assert call(pillar_service, "POST", f"Patient/{created['id']}/$tag", {}).status == 201
    with pytest.raises(FhirError):
        call(pillar_service, "POST", f"Patient/{created['id']}/$tag", {"fail": True})
    found = body(call(pillar_service, "GET", "Observation", query=[("code:text", "tagged")]))
    assert found["total"] == 1  # the failed call left nothing behind


def test_the_statement_and_the_openapi_document_list_it(pillar_service: FhirService) -> None:
    statement = pillar_service.capabilities()
    rest = statement["rest"][0]
    system = {op["name"]: op for op in rest["operation"]}
    patient_entry = next(r for r in rest["resource"] if r["type"] == "Patient")
    on_patient = {op["name"] for op in patient_entry["operation"]}
    assert system["count-patients"]["definition"] == "urn:test:OperationDefinition:count"
    assert {"count-patients", "tag", "everything", "export", "validate"} <= on_patient
    paths = orjson.loads(pillar_service.openapi("http://test/fhir/"))["paths"]
    assert set(paths["/Patient/{id}/$tag"]) >= {"post", "parameters"}
    assert "get" in paths["/$count-patients"] and "get" in paths["/Patient/{id}/$count-patients"]
    assert "/Patient/$tag" not in paths


def test_the_audit_trail_names_it_by_its_registration(pillar_service: FhirService) -> None:
    call(pillar_service, "GET", "$count-patients", query=[("note", "x")])
    pillar_service.audit.catch_up()
    with pillar_service.repository.reader() as session:
        versions = session.history(HistoryQuery(resource_type="AuditEvent", count=100))
    events = [orjson.loads(v.content or b"{}") for v in versions]
    ours = [e for e in events if any(c.get("code") == "count-patients" for c in e["subtype"])]
    assert len(ours) == 1
    assert {c["code"] for c in ours[0]["subtype"]} == {"operation", "count-patients"}
    assert ours[0]["action"] == "E"
    assert any("query" in entity for entity in ours[0].get("entity", []))


def test_a_name_or_interaction_is_registered_once() -> None:
    registry = OperationRegistry()
    registry.register(COUNT)
    with pytest.raises(DuplicateOperation):
        registry.register(COUNT)
    with pytest.raises(DuplicateOperation):
        registry.register(Operation("other", _count_patients, "urn:x", system=True,
                                    interaction="count-patients"))
