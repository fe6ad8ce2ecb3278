"""The audit trail on both databases: what is recorded, where, and that it commits with
the write it records (or, for a failure, on its own)."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest

from hygeia.fhir.outcome import FhirError, MethodNotAllowed, PreconditionFailed
from hygeia.fhir.validation import validate
from hygeia.server import AuditSettings, FhirService, Settings
from hygeia.server.auth.access import Access
from hygeia.server.auth.scopes import Scopes
from hygeia.store import Repository
from hygeia.store.base import HistoryQuery
from tests.helpers import body, call, patient

REMOTE = "192.0.2.7"


def trail(service: FhirService) -> list[dict[str, Any]]:
    """Every stored AuditEvent, oldest first, read past the API (so not itself audited).

    Events of reads wait in the outbox until moved; reading the trail through the
    API moves them first, and so does this."""
    service.audit.catch_up()
    with service.repository.reader() as session:
        versions = session.history(HistoryQuery(resource_type="AuditEvent", count=10_000))
    events = [orjson.loads(v.content or b"{}") for v in versions]
    return sorted(events, key=lambda event: event["recorded"])


def subtypes(event: dict[str, Any]) -> list[str]:
    return [coding["code"] for coding in event["subtype"]]


def references(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", [])
            if "reference" in e.get("what", {}) and e["role"]["code"] == "4"]


def patients(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", []) if e["role"]["code"] == "1"]


def create(service: FhirService, resource: dict[str, Any], **kwargs: Any) -> str:
    response = call(service, "POST", resource["resourceType"], resource, remote=REMOTE, **kwargs)
    assert response.status == 201
    return str(body(response)["id"])


def observation(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{patient_id}"}}


def test_audit_off_records_nothing(service: FhirService) -> None:
    id = create(service, patient("x"))
    call(service, "GET", f"Patient/{id}")
    assert trail(service) == []


def test_a_write_is_recorded_with_its_version_patient_and_client(audited: FhirService) -> None:
    id = create(audited, patient("w"))
    [event] = trail(audited)
    assert event["type"]["code"] == "rest" and subtypes(event) == ["create"]
    assert event["action"] == "C" and event["outcome"] == "0"
    assert references(event) == [f"Patient/{id}/_history/1"]
    assert patients(event) == [f"Patient/{id}"]
    client = event["agent"][0]
    assert client["network"] == {"address": REMOTE, "type": "2"} and client["requestor"]
    assert event["source"]["observer"]["display"]
    assert validate(event, "AuditEvent") == []


def test_update_patch_and_delete_are_u_u_d_with_the_patient(audited: FhirService) -> None:
    pid = create(audited, patient("p"))
    oid = create(audited, observation(pid))
    changed = {**observation(pid), "id": oid, "status": "amended"}
    assert call(audited, "PUT", f"Observation/{oid}", changed).status == 200
    call(audited, "PATCH", f"Observation/{oid}", [
        {"op": "replace", "path": "/status", "value": "final"}],
        content_type="application/json-patch+json")
    assert call(audited, "DELETE", f"Observation/{oid}").status == 204
    events = trail(audited)[2:]
    assert [(subtypes(e)[0], e["action"]) for e in events] == [
        ("update", "U"), ("patch", "U"), ("delete", "D")]
    assert [references(e) for e in events] == [[f"Observation/{oid}/_history/{v}"]
                                               for v in (2, 3, 4)]
    # the deletion's patient comes from the version it deleted
    assert all(patients(e) == [f"Patient/{pid}"] for e in events)


def test_update_as_create_is_action_c(audited: FhirService) -> None:
    assert call(audited, "PUT", "Patient/new1", {**patient("n"), "id": "new1"}).status == 201
    [event] = trail(audited)
    assert subtypes(event) == ["update"] and event["action"] == "C"


def test_a_failed_write_leaves_no_trace_but_its_failure(audited: FhirService) -> None:
    """The X-Provenance check fails after the Patient and its AuditEvent were put in the
    transaction: both roll back, and the failure is recorded on its own."""
    with pytest.raises(FhirError) as raised:
        call(audited, "POST", "Patient", patient("gone"), provenance="{not json")
    assert raised.value.status == 400
    with audited.repository.reader() as session:
        assert session.history(HistoryQuery(resource_type="Patient")) == []
    [event] = trail(audited)
    assert subtypes(event) == ["create"] and event["outcome"] == "4"
    assert "X-Provenance" in event["outcomeDesc"]
    assert "profile" not in event["meta"]  # no BALP success profile on a failure
    assert validate(event, "AuditEvent") == []


def test_a_failed_transaction_records_one_failure_and_no_entry(audited: FhirService) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": patient("t"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation("x"),
         "request": {"method": "POST", "url": "Observation", "ifNoneExist": "code=pulse"}},
        {"request": {"method": "PUT", "url": "Patient/none"}, "resource": {
            **patient("u"), "id": "none"}},
        {"request": {"method": "DELETE", "url": "Patient/none", "ifMatch": 'W/"9"'}}]}
    with pytest.raises(FhirError):
        call(audited, "POST", "", bundle)
    audited.audit.catch_up()
    with audited.repository.reader() as session:
        assert {v.resource_type for v in session.history(HistoryQuery())} == {"AuditEvent"}
    [event] = trail(audited)
    assert subtypes(event) == ["transaction"] and event["outcome"] == "4"


def test_a_transaction_records_each_entry_in_its_own_commit(audited: FhirService) -> None:
    pid = create(audited, patient("tx"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(pid), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": f"Patient/{pid}"}}]}
    response = body(call(audited, "POST", "", bundle))
    location = response["entry"][0]["response"]["location"]
    events = trail(audited)[1:]
    assert sorted(subtypes(e)[0] for e in events) == ["create", "read"]
    created = next(e for e in events if subtypes(e) == ["create"])
    assert references(created) == [location.removeprefix("http://test/fhir/")]
    assert all(patients(e) == [f"Patient/{pid}"] for e in events)


def test_reads_and_searches_name_the_patient(audited: FhirService) -> None:
    pid = create(audited, patient("r"))
    oid = create(audited, observation(pid))
    before = len(trail(audited))
    call(audited, "GET", f"Observation/{oid}")
    call(audited, "GET", f"Observation/{oid}/_history/1")
    call(audited, "GET", "Observation", query=[("patient", pid)])
    call(audited, "GET", "Observation", query=[("subject", f"Patient/{pid}"), ("_count", "1")])
    call(audited, "GET", f"Patient/{pid}/Observation")
    call(audited, "GET", f"Patient/{pid}/$everything")
    call(audited, "GET", f"Patient/{pid}/_history")
    call(audited, "GET", "Patient", query=[("_id", pid)])
    events = trail(audited)[before:]
    assert [subtypes(e)[0] for e in events] == [
        "read", "vread", "search-type", "search-type", "search-type", "operation",
        "history-instance", "search-type"]
    for event in events:
        assert patients(event) == [f"Patient/{pid}"], event
        assert validate(event, "AuditEvent") == []
    assert references(events[0]) == [f"Observation/{oid}/_history/1"]
    query = next(e for e in events[2]["entity"] if e["role"]["code"] == "24")
    assert query["description"] == f"GET http://test/fhir/Observation?patient={pid}"
    import base64
    assert base64.b64decode(query["query"]).decode() == query["description"]
    assert events[5]["subtype"][1] == {"system": "urn:hygeia:operation", "code": "everything",
                                       "display": "everything"}


def test_a_refused_read_is_a_minor_failure_naming_what_was_asked(audited: FhirService) -> None:
    with pytest.raises(FhirError):
        call(audited, "GET", "Patient/missing")
    with pytest.raises(FhirError):
        call(audited, "GET", "NoSuchType/1")
    missing, unknown = trail(audited)
    assert missing["outcome"] == "4" and subtypes(missing) == ["read"]
    assert patients(missing) == ["Patient/missing"]
    assert "does not exist" in missing["outcomeDesc"]
    assert unknown["outcome"] == "4" and references(unknown) == ["NoSuchType/1"]


WRITES_OF_THE_TRAIL = [
    ("POST", "AuditEvent", {"resourceType": "AuditEvent"}),
    ("PUT", "AuditEvent/{id}", None),
    ("PUT", "AuditEvent?_id={id}", None),
    ("PATCH", "AuditEvent/{id}", [{"op": "replace", "path": "/outcome", "value": "0"}]),
    ("DELETE", "AuditEvent/{id}", None),
    ("DELETE", "AuditEvent?_id={id}", None),
]


@pytest.mark.parametrize(("method", "url", "payload"), WRITES_OF_THE_TRAIL)
def test_the_trail_cannot_be_written_through_the_api(audited: FhirService, method: str,
                                                     url: str, payload: Any) -> None:
    create(audited, patient("a"))
    [event] = trail(audited)
    target = url.format(id=event["id"])
    payload = payload if payload is not None else {**event, "outcome": "8"}
    kwargs: dict[str, Any] = {"content_type": "application/json-patch+json"} \
        if method == "PATCH" else {}
    with pytest.raises(MethodNotAllowed):
        call(audited, method, target, payload, **kwargs)
    entry = {"request": {"method": method, "url": target}}
    if method in ("POST", "PUT"):
        entry["resource"] = payload
    with pytest.raises(MethodNotAllowed):
        call(audited, "POST", "", {"resourceType": "Bundle", "type": "transaction",
                                   "entry": [entry]})
    batch = body(call(audited, "POST", "", {"resourceType": "Bundle", "type": "batch",
                                            "entry": [entry]}))
    assert batch["entry"][0]["response"]["status"] == "405"
    assert batch["entry"][0]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    events = trail(audited)
    assert events[0] == event  # unchanged
    assert len(events) == 4 and all(e["outcome"] == "4" for e in events[1:])


def test_the_trail_cannot_be_written_with_a_token_either(audited: FhirService) -> None:
    access = Access("app", Scopes.parse("system/*.cruds system/AuditEvent.cruds"), "app")
    with pytest.raises(FhirError) as raised:
        call(audited, "POST", "AuditEvent", {"resourceType": "AuditEvent"}, access=access)
    assert raised.value.status in (403, 405)


def test_the_trail_cannot_be_imported(audited: FhirService) -> None:
    from hygeia.server.bulk.importing import import_folder

    line = {"resourceType": "AuditEvent", "id": "fake", "type": {"code": "rest"},
            "recorded": "2020-01-01T00:00:00Z", "agent": [{"requestor": True}],
            "source": {"observer": {"display": "x"}}}
    (import_folder(audited) / "trail.ndjson").write_bytes(
        orjson.dumps(line) + b"\n" + orjson.dumps(patient("imp")) + b"\n")
    started = call(audited, "POST", "$import", {"resourceType": "Parameters", "parameter": [
        {"name": "input", "part": [{"name": "url", "valueUri": "trail.ndjson"}]}]},
        prefer_async=True)
    assert audited.job_runner().run_all() == 1
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    manifest = body(call(audited, "GET", status))
    assert manifest["output"][0]["count"] == 1 and manifest["error"][0]["count"] == 1
    assert all(e["id"] != "fake" for e in trail(audited))
    kinds = [subtypes(e)[-1] for e in trail(audited)]
    assert kinds == ["import", "job-status"]


def test_the_trail_is_searchable_and_reading_it_is_audited_once(audited: FhirService) -> None:
    pid = create(audited, patient("s"))
    oid = create(audited, observation(pid))
    call(audited, "GET", f"Observation/{oid}")
    with pytest.raises(FhirError):
        call(audited, "GET", "Observation/none")

    def search(*params: tuple[str, str]) -> list[dict[str, Any]]:
        found = body(call(audited, "GET", "AuditEvent", query=[*params, ("_count", "100")]))
        return [e["resource"] for e in found.get("entry", [])]

    assert len(search(("patient", pid))) == 3
    assert len(search(("entity", f"Observation/{oid}"))) == 2
    assert [subtypes(e) for e in search(("subtype", "read"), ("outcome", "4"))] == [["read"]]
    assert len(search(("action", "C"))) == 2
    assert len(search(("type", "rest"), ("date", "ge2000-01-01"))) >= 4
    assert len(search(("address", REMOTE))) == 2
    assert len(search(("agent-name", "anonymous"))) >= 4
    # each search of the trail is one more event, and only one
    assert len(trail(audited)) == 4 + 7
    assert subtypes(trail(audited)[-1]) == ["search-type"]


def test_batch_entries_are_each_recorded(audited: FhirService) -> None:
    pid = create(audited, patient("b"))
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        {"request": {"method": "GET", "url": "Patient/none"}},
        {"resource": observation(pid), "request": {"method": "POST", "url": "Observation"}}]}
    call(audited, "POST", "", bundle)
    events = trail(audited)[1:]
    assert sorted((subtypes(e)[0], e["outcome"]) for e in events) == [
        ("create", "0"), ("read", "0"), ("read", "4")]


def test_operations_and_jobs_are_recorded(audited: FhirService) -> None:
    started = call(audited, "GET", "$export", prefer_async=True)
    job = started.headers["Content-Location"].rsplit("/", 1)[1]
    call(audited, "GET", f"_job/{job}")
    call(audited, "DELETE", f"_job/{job}")
    call(audited, "POST", "Patient/$validate", patient("v"))
    with pytest.raises(FhirError):
        call(audited, "GET", "_job/nojob")
    events = trail(audited)
    assert [(subtypes(e)[1], e["action"], e["outcome"]) for e in events] == [
        ("export", "E", "0"), ("job-status", "R", "0"), ("job-cancel", "D", "0"),
        ("validate", "E", "0"), ("job-status", "R", "4")]
    jobs = [next(x["what"]["identifier"]["value"] for x in e["entity"] if x["role"]["code"] == "20")
            for e in events[:3]]
    assert jobs == [job] * 3


def test_a_token_names_the_app_the_user_and_the_patient_context(audited: FhirService) -> None:
    pid = create(audited, patient("ctx"))
    access = Access("my-app", Scopes.parse("patient/*.rs"), "alice",
                    fhir_user="Practitioner/7", patient=pid, token_id="tok-1")
    call(audited, "GET", "Observation", access=access, remote=REMOTE)
    event = trail(audited)[-1]
    client, server, user = event["agent"]
    assert client["who"]["identifier"]["value"] == "my-app" and not client["requestor"]
    assert server["requestor"] is False
    assert user["who"]["reference"] == "Practitioner/7" and user["name"] == "alice"
    assert user["requestor"] and user["policy"] == ["tok-1"]
    assert user["type"]["coding"][0]["code"] == "IRCP"
    assert patients(event) == [f"Patient/{pid}"]
    assert validate(event, "AuditEvent") == []


def test_authentication_events(audited: FhirService) -> None:
    audited.audit.authentication("4", client_id="app", username="bob", remote=REMOTE,
                                 description="Wrong password for bob.")
    audited.audit.authentication("0", client_id="app", event="logout",
                                 site="http://test/fhir/")
    failed, revoked = trail(audited)
    assert failed["type"]["code"] == "110114" and failed["subtype"][0]["code"] == "110122"
    assert failed["outcome"] == "4" and failed["outcomeDesc"] == "Wrong password for bob."
    assert [a.get("name") for a in failed["agent"]] == ["app", None, "bob"]
    assert revoked["subtype"][0]["code"] == "110123" and revoked["outcome"] == "0"
    assert all(validate(e, "AuditEvent") == [] for e in (failed, revoked))


def test_concurrent_reads_are_all_recorded_before_they_answer(audited: FhirService) -> None:
    pid = create(audited, patient("c"))
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(15):
                call(audited, "GET", f"Patient/{pid}")
                # answered means recorded: the event is already committed
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(trail(audited)) == 1 + 6 * 15


def test_without_waiting_events_are_stored_by_close(repository: Repository) -> None:
    service = FhirService(repository, Settings(audit=AuditSettings(enabled=True, durable=False)))
    pid = create(service, patient("async"))
    for _ in range(20):
        call(service, "GET", f"Patient/{pid}")
    service.close()
    assert len(trail(service)) == 21


def test_a_conditional_create_that_matches_is_still_recorded(audited: FhirService) -> None:
    create(audited, patient("cc"))
    response = call(audited, "POST", "Patient", patient("cc"),
                    if_none_exist="identifier=urn:test|cc")
    assert response.status == 200
    assert [subtypes(e) for e in trail(audited)] == [["create"], ["create"]]


def test_a_precondition_failure_in_a_write_is_recorded(audited: FhirService) -> None:
    pid = create(audited, patient("pf"))
    with pytest.raises(PreconditionFailed):
        call(audited, "PUT", f"Patient/{pid}", {**patient("pf"), "id": pid}, if_match='W/"7"')
    failed = trail(audited)[-1]
    assert subtypes(failed) == ["update"] and failed["outcome"] == "4"
    assert patients(failed) == [f"Patient/{pid}"]
