"""Referential integrity through a real ``hygeia serve --referential-integrity`` on SQLite
and PostgreSQL (issue 14): dangling references are refused (422), referenced resources
cannot be deleted (409) unless with ``_cascade=delete``, and a create racing a delete of
its target never leaves a dangling reference."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import BACKENDS, ServerProcess, backend_server
from tests.helpers import patient, unique

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module", params=BACKENDS)
def strict(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """A server enforcing referential integrity, per backend, shared by this module."""
    with backend_server(request, tmp_path_factory, "integrity",
                        "--referential-integrity") as server:
        yield server


def post(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    return client.post(resource["resourceType"], content=orjson.dumps(resource),
                       headers=FHIR_JSON)


def created(client: httpx.Client, resource: dict[str, Any]) -> str:
    response = post(client, resource)
    assert response.status_code == 201, response.text
    return f"{resource['resourceType']}/{response.json()['id']}"


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": subject}, **extra}


def issues(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return list(body["issue"])


def test_a_dangling_reference_is_refused_with_its_location(strict: ServerProcess) -> None:
    response = post(strict.client, observation("Patient/nobody-here"))
    assert response.status_code == 422
    [issue] = issues(response)
    assert issue["expression"] == ["Observation.subject"]
    assert "Patient/nobody-here" in issue["diagnostics"]
    assert "does not exist" in issue["diagnostics"]


def test_local_references_that_resolve_are_accepted(strict: ServerProcess) -> None:
    subject = created(strict.client, patient())
    own_absolute = f"{strict.base}/{subject}"
    accepted = [
        observation(subject),
        observation(f"{subject}/_history/1"),
        observation(own_absolute),
        # not local, so not checked: another server, a contained resource, a urn
        observation("http://elsewhere.example/fhir/Patient/1"),
        observation("#p", contained=[{"resourceType": "Patient", "id": "p"}]),
        observation("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"),
    ]
    for resource in accepted:
        assert post(strict.client, resource).status_code == 201, resource


def test_deleted_target_and_nested_locations_are_named(strict: ServerProcess) -> None:
    subject = created(strict.client, patient())
    assert strict.client.delete(subject).status_code == 204
    performer = created(strict.client, {"resourceType": "Practitioner"})
    resource = observation(subject, performer=[{"reference": performer},
                                               {"reference": "Practitioner/gone-1"}])
    response = post(strict.client, resource)
    assert response.status_code == 422
    found = {issue["expression"][0]: issue["diagnostics"] for issue in issues(response)}
    assert set(found) == {"Observation.subject", "Observation.performer[1]"}
    assert "was deleted" in found["Observation.subject"]


def test_update_and_patch_are_checked(strict: ServerProcess) -> None:
    subject = created(strict.client, patient())
    reference = created(strict.client, observation(subject))
    body = {**observation("Patient/missing-2"), "id": reference.split("/")[1]}
    response = strict.client.put(reference, content=orjson.dumps(body), headers=FHIR_JSON)
    assert response.status_code == 422
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/missing-3"}]
    response = strict.client.patch(reference, content=orjson.dumps(patch),
                                   headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 422
    assert issues(response)[0]["expression"] == ["Observation.subject"]
    assert strict.client.get(reference).json()["subject"]["reference"] == subject


def test_deleting_a_referenced_resource_is_a_conflict(strict: ServerProcess) -> None:
    subject = created(strict.client, patient())
    referrer = created(strict.client, observation(f"{strict.base}/{subject}"))
    response = strict.client.delete(subject)
    assert response.status_code == 409
    [issue] = issues(response)
    assert referrer in issue["diagnostics"] and "_cascade=delete" in issue["diagnostics"]
    assert strict.client.get(subject).status_code == 200


def test_cascade_deletes_referrers_recursively(strict: ServerProcess) -> None:
    subject = created(strict.client, patient())
    encounter = created(strict.client, {"resourceType": "Encounter", "status": "finished",
                                        "class": {"code": "AMB"},
                                        "subject": {"reference": subject}})
    nested = created(strict.client, observation(subject, encounter={"reference": encounter}))
    only_encounter = created(strict.client, {"resourceType": "Condition",
                                             "subject": {"reference": subject},
                                             "encounter": {"reference": encounter}})
    unrelated = created(strict.client, patient())
    response = strict.client.delete(subject, params={"_cascade": "delete"})
    assert response.status_code == 204
    for gone in (subject, encounter, nested, only_encounter):
        assert strict.client.get(gone).status_code == 410, gone
    assert strict.client.get(unrelated).status_code == 200


def test_conditional_delete_cascades_too(strict: ServerProcess) -> None:
    marker = unique()
    subject = created(strict.client, patient(marker))
    referrer = created(strict.client, observation(subject))
    query = {"identifier": f"urn:test|{marker}"}
    assert strict.client.delete("Patient", params=query).status_code == 409
    response = strict.client.delete("Patient", params={**query, "_cascade": "delete"})
    assert response.status_code == 204
    assert strict.client.get(referrer).status_code == 410
    assert strict.client.delete("Patient", params={"_cascade": "delete"}).status_code == 400


def test_a_bad_cascade_value_is_refused(strict: ServerProcess) -> None:
    subject = created(strict.client, patient())
    response = strict.client.delete(subject, params={"_cascade": "yes"})
    assert response.status_code == 400
    assert issues(response)[0]["expression"] == ["_cascade"]


def entry(method: str, url: str, resource: dict[str, Any] | None = None,
          full_url: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"request": {"method": method, "url": url}}
    if resource is not None:
        item["resource"] = resource
    if full_url is not None:
        item["fullUrl"] = full_url
    return item


def send(client: httpx.Client, kind: str, entries: list[dict[str, Any]]) -> httpx.Response:
    return client.post("", content=orjson.dumps({"resourceType": "Bundle", "type": kind,
                                                 "entry": entries}), headers=FHIR_JSON)


def test_transaction_entries_may_refer_to_each_other(strict: ServerProcess) -> None:
    urn = "urn:uuid:5b0bd1d4-5e1c-4a39-9f0c-1d2d3b4a5c6e"
    response = send(strict.client, "transaction", [
        entry("POST", "Observation", observation(urn)),
        entry("PUT", "Practitioner/tx-practitioner-1",
              {"resourceType": "Practitioner", "id": "tx-practitioner-1"}),
        entry("POST", "Patient", patient(generalPractitioner=[
            {"reference": "Practitioner/tx-practitioner-1"}]), full_url=urn),
    ])
    assert response.status_code == 200, response.text


def test_a_dangling_transaction_entry_is_located(strict: ServerProcess) -> None:
    response = send(strict.client, "transaction", [
        entry("POST", "Patient", patient()),
        entry("POST", "Observation", observation("Patient/missing-tx")),
    ])
    assert response.status_code == 422
    [issue] = issues(response)
    assert issue["expression"] == ["Bundle.entry[1].resource.subject"]


def test_a_transaction_may_delete_a_resource_with_its_referrers(strict: ServerProcess
                                                                 ) -> None:
    subject = created(strict.client, patient())
    referrer = created(strict.client, observation(subject))
    alone = send(strict.client, "transaction", [entry("DELETE", subject)])
    assert alone.status_code == 409
    assert issues(alone)[0]["expression"] == ["Bundle.entry[0]"]
    together = send(strict.client, "transaction", [entry("DELETE", subject),
                                                   entry("DELETE", referrer)])
    assert together.status_code == 200, together.text


def test_batch_entries_are_checked_one_by_one(strict: ServerProcess) -> None:
    subject = created(strict.client, patient())
    patch = base64.b64encode(orjson.dumps(
        [{"op": "replace", "path": "/subject/reference", "value": "Patient/missing-b"}]))
    referrer = created(strict.client, observation(subject))
    response = send(strict.client, "batch", [
        entry("POST", "Observation", observation(subject)),
        entry("POST", "Observation", observation("Patient/missing-batch")),
        entry("PATCH", referrer, {"resourceType": "Binary",
                                  "contentType": "application/json-patch+json",
                                  "data": patch.decode()}),
        entry("DELETE", subject),
    ])
    assert response.status_code == 200
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201", "422", "422", "409"]


def test_the_capability_statement_and_openapi_declare_it(strict: ServerProcess) -> None:
    statement = strict.client.get("metadata").json()
    patient_entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"enforced", "local"} <= set(patient_entry["referencePolicy"])
    delete = next(i for i in patient_entry["interaction"] if i["code"] == "delete")
    assert "_cascade=delete" in delete["documentation"]
    document = strict.client.get("openapi.json").json()
    parameters = document["paths"]["/Patient/{id}"]["delete"]["parameters"]
    assert [p["name"] for p in parameters] == ["_cascade"]


def test_off_by_default(client: httpx.Client) -> None:
    """The session's ordinary server: dangling references are stored, and _cascade is
    refused because it would mean nothing."""
    assert post(client, observation("Patient/not-checked")).status_code == 201
    statement = client.get("metadata").json()
    assert all("referencePolicy" not in r for r in statement["rest"][0]["resource"])
    subject = created(client, patient())
    response = client.delete(subject, params={"_cascade": "delete"})
    assert response.status_code == 400
    assert "--referential-integrity" in issues(response)[0]["diagnostics"]


ROUNDS = 30


def test_create_racing_delete_leaves_no_dangling_reference(strict: ServerProcess) -> None:
    """Each round creates a Patient, then at once references it and deletes it: exactly
    one of the two may win, and the database never holds the loser's half."""
    for _ in range(ROUNDS):
        subject = created(strict.client, patient())
        barrier = threading.Barrier(2)
        results: dict[str, int] = {}

        def create(subject: str = subject, barrier: threading.Barrier = barrier,
                   results: dict[str, int] = results) -> None:
            with httpx.Client(base_url=strict.base + "/", timeout=60) as own:
                barrier.wait()
                results["create"] = post(own, observation(subject)).status_code

        def delete(subject: str = subject, barrier: threading.Barrier = barrier,
                   results: dict[str, int] = results) -> None:
            with httpx.Client(base_url=strict.base + "/", timeout=60) as own:
                barrier.wait()
                results["delete"] = own.delete(subject).status_code

        threads = [threading.Thread(target=create), threading.Thread(target=delete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        outcome = (results["create"], results["delete"])
        # (a 409 create: PostgreSQL found the two waiting for each other; nothing stored)
        assert outcome in {(201, 409), (422, 204), (409, 204)}, outcome
        alive = strict.client.get(subject).status_code == 200
        referrers = strict.client.get("Observation", params={"subject": subject}).json()
        assert alive == (outcome[1] == 409)
        assert bool(referrers.get("entry")) == (outcome[0] == 201)
