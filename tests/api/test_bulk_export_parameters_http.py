"""Bulk Data IG v2 kick-off parameters over real HTTP, on both databases.

``_since`` in the future, ``patient`` on POST, ``_type`` outside the Patient
compartment, lenient ``_typeFilter``, ``_elements`` and ``includeAssociatedData``:
what is left out is reported in the manifest's error file (NDJSON of
OperationOutcomes), and the export runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.api.smart import BackendKey, backend_token, bearer, cli_json
from tests.api.test_bulk_http import FHIR_JSON, KICK_OFF, download, poll
from tests.conftest import ServerProcess

LENIENT = {**KICK_OFF, "Prefer": "respond-async, handling=lenient"}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """Patients p1 and p2 with two observations each, a practitioner, Group g1 holding p1,
    and three Provenance: two of Observation p1-o0 (31 January, 1 February), one of dr1."""
    process = ServerProcess(database_url, "--files", str(tmp_path / "files"))
    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Who"}]},
        {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
         "member": [{"entity": {"reference": "Patient/p1"}}]}]
    for patient in ("p1", "p2"):
        resources.append({"resourceType": "Patient", "id": patient, "gender": "female",
                          "birthDate": "1970-01-01"})
        resources.extend({"resourceType": "Observation", "id": f"{patient}-o{number}",
                          "status": "final", "code": {"text": "weight"},
                          "valueQuantity": {"value": 70 + number},
                          "subject": {"reference": f"Patient/{patient}"}}
                         for number in range(2))
    # jan is earlier than feb, though its text sorts after it: instants are compared
    for id, target, recorded in (("jan", "Observation/p1-o0", "2024-02-01T05:00:00+09:00"),
                                 ("feb", "Observation/p1-o0/_history/1",
                                  "2024-02-01T00:00:00Z"),
                                 ("doc", "Practitioner/dr1", "2024-03-01T00:00:00Z")):
        resources.append({"resourceType": "Provenance", "id": id, "recorded": recorded,
                          "target": [{"reference": target}],
                          "agent": [{"who": {"reference": "Practitioner/dr1"}}]})
    for resource in resources:
        response = process.client.put(f"{resource['resourceType']}/{resource['id']}",
                                      content=orjson.dumps(resource), headers=FHIR_JSON)
        assert response.is_success, response.text
    try:
        yield process
    finally:
        process.stop()


def run(client: httpx.Client, path: str, params: Any = None,
        body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
        ) -> dict[str, Any]:
    """Kick off (GET, or POST with a Parameters body), poll, return the manifest."""
    headers = headers or KICK_OFF
    if body is None:
        started = client.get(path, params=params, headers=headers)
    else:
        started = client.post(path, content=orjson.dumps(body),
                              headers={**headers, **FHIR_JSON})
    assert started.status_code == 202, started.text
    done = poll(client, started.headers["Content-Location"])
    assert done.status_code == 200, done.text
    manifest: dict[str, Any] = done.json()
    return manifest


def contents(client: httpx.Client, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """type -> the exported resources, sorted by id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        found.setdefault(item["type"], []).extend(download(client, item["url"]))
    return {kind: sorted(lines, key=lambda r: r["id"]) for kind, lines in found.items()}


def ids(client: httpx.Client, manifest: dict[str, Any]) -> dict[str, list[str]]:
    return {kind: [r["id"] for r in lines] for kind, lines in contents(client, manifest).items()}


def reported(client: httpx.Client, manifest: dict[str, Any]) -> list[str]:
    """The diagnostics of the error file's OperationOutcomes."""
    texts = []
    for item in manifest["error"]:
        assert item["type"] == "OperationOutcome"
        outcomes = download(client, item["url"])
        assert len(outcomes) == item["count"]
        for outcome in outcomes:
            [issue] = outcome["issue"]  # one OperationOutcome per thing left out
            assert issue["severity"] == "warning" and issue["expression"]
            texts.append(issue["diagnostics"])
    return texts


def parameters(*parts: tuple[str, str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters",
            "parameter": [{"name": name, kind: value} for name, kind, value in parts]}


def test_since_in_the_future_is_a_400(server: ServerProcess) -> None:
    for path in ("$export", "Patient/$export", "Group/g1/$export"):
        response = server.client.get(path, params={"_since": "2999-01-01T00:00:00Z"},
                                     headers=KICK_OFF)
        assert response.status_code == 400, path
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == ["_since"]
        assert "future" in outcome["issue"][0]["diagnostics"]
    past = run(server.client, "$export", {"_since": "2000-01-01T00:00:00Z",
                                          "_type": "Patient"})
    assert ids(server.client, past) == {"Patient": ["p1", "p2"]}


def test_patient_parameter_on_post_exports_only_those_patients(server: ServerProcess) -> None:
    client = server.client
    chosen = parameters(("patient", "valueReference", {"reference": "Patient/p2"}),
                        ("patient", "valueReference", {"reference": "Patient/ghost"}),
                        ("_type", "valueString", "Patient,Observation"))
    manifest = run(client, "Patient/$export", body=chosen)
    assert ids(client, manifest) == {"Observation": ["p2-o0", "p2-o1"], "Patient": ["p2"]}
    [text] = reported(client, manifest)  # the IG: unknown patients go to the error file
    assert "Patient/ghost" in text and "not on this server" in text
    group = run(client, "Group/g1/$export", body=parameters(
        ("patient", "valueReference", {"reference": "Patient/p1"}),
        ("patient", "valueReference", {"reference": "Patient/p2"}),
        ("_type", "valueString", "Patient")))
    assert ids(client, group) == {"Patient": ["p1"]}
    [text] = reported(client, group)
    assert "Patient/p2" in text and "not members of Group/g1" in text
    system = client.post("$export", headers={**KICK_OFF, **FHIR_JSON}, content=orjson.dumps(
        parameters(("patient", "valueReference", {"reference": "Patient/p1"}))))
    assert system.status_code == 400
    assert system.json()["issue"][0]["expression"] == ["patient"]


def test_type_outside_the_compartment_is_reported_not_refused(server: ServerProcess) -> None:
    client = server.client
    for path in ("Patient/$export", "Group/g1/$export"):
        manifest = run(client, path, {"_type": "Patient,Practitioner,Medication"})
        assert list(ids(client, manifest)) == ["Patient"]
        [text] = reported(client, manifest)
        assert "Medication, Practitioner" in text and "Patient compartment" in text
        only_outside = client.get(path, params={"_type": "Practitioner"}, headers=KICK_OFF)
        assert only_outside.status_code == 400
        assert only_outside.json()["issue"][0]["expression"] == ["_type"]


def test_lenient_type_filter_and_parameters_are_reported(server: ServerProcess) -> None:
    client = server.client
    query = [("_type", "Observation"), ("_typeFilter", "Observation?nonsense=1"),
             ("_typeFilter", "Observation?subject=Patient/p1"), ("_madeUp", "x")]
    strict = client.get("$export", params=query[:2], headers=KICK_OFF)
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["_typeFilter"]
    manifest = run(client, "$export", query, headers=LENIENT)
    # the unknown filter is dropped; the other still applies
    assert ids(client, manifest) == {"Observation": ["p1-o0", "p1-o1"]}
    texts = reported(client, manifest)
    assert len(texts) == 2
    assert any("nonsense" in text and "ignored" in text for text in texts)
    assert any("_madeUp" in text for text in texts)
    bad_shape = run(client, "Patient/$export", [("_type", "Patient"),
                                                ("_typeFilter", "no-type-here")],
                    headers=LENIENT)
    assert ids(client, bad_shape) == {"Patient": ["p1", "p2"]}
    assert "no-type-here" in reported(client, bad_shape)[0]


def subsetted(resource: dict[str, Any]) -> bool:
    return any(tag.get("code") == "SUBSETTED" for tag in resource["meta"].get("tag", []))


def test_elements_on_system_patient_and_group_kick_offs(server: ServerProcess) -> None:
    client = server.client
    system = contents(client, run(client, "$export", {"_type": "Observation,Patient",
                                                      "_elements": "Observation.value,gender"}))
    observation = system["Observation"][0]
    # value[x] is kept as valueQuantity; code and status are mandatory and stay
    assert set(observation) == {"resourceType", "id", "meta", "status", "code",
                                "valueQuantity"}
    assert subsetted(observation)
    assert set(system["Patient"][0]) == {"resourceType", "id", "meta", "gender"}
    posted = contents(client, run(client, "Patient/$export", body=parameters(
        ("_type", "valueString", "Patient"), ("_elements", "valueString", "birthDate"))))
    assert [set(p) for p in posted["Patient"]] == [{"resourceType", "id", "meta",
                                                     "birthDate"}] * 2
    assert all(subsetted(p) for p in posted["Patient"])
    group = contents(client, run(client, "Group/g1/$export", {
        "_type": "Patient,Observation", "_elements": "Patient.gender"}))
    assert set(group["Patient"][0]) == {"resourceType", "id", "meta", "gender"}
    whole = group["Observation"][0]  # no element named for Observation: exported whole
    assert "subject" in whole and not subsetted(whole)


def test_elements_on_the_other_method_of_each_kick_off(server: ServerProcess) -> None:
    """The three combinations the test above leaves out: system POST, Patient GET and
    Group POST take ``_elements`` the same way."""
    client = server.client
    system = contents(client, run(client, "$export", body=parameters(
        ("_type", "valueString", "Observation,Patient"),
        ("_elements", "valueString", "Observation.value,gender"))))
    assert [set(o) for o in system["Observation"]] == [
        {"resourceType", "id", "meta", "status", "code", "valueQuantity"}] * 4
    assert [set(p) for p in system["Patient"]] == [{"resourceType", "id", "meta",
                                                    "gender"}] * 2
    assert all(subsetted(r) for r in system["Observation"] + system["Patient"])
    patient = contents(client, run(client, "Patient/$export", {
        "_type": "Patient,Observation", "_elements": "Patient.birthDate"}))
    assert [set(p) for p in patient["Patient"]] == [{"resourceType", "id", "meta",
                                                     "birthDate"}] * 2
    assert all(subsetted(p) for p in patient["Patient"])
    whole = patient["Observation"]  # no element named for Observation: exported whole
    assert len(whole) == 4 and all("subject" in o and not subsetted(o) for o in whole)
    group = contents(client, run(client, "Group/g1/$export", body=parameters(
        ("_type", "valueString", "Patient,Observation"),
        ("_elements", "valueString", "Observation.subject"))))
    assert [set(o) for o in group["Observation"]] == [
        {"resourceType", "id", "meta", "status", "code", "subject"}] * 2
    assert all(subsetted(o) for o in group["Observation"])
    [member] = group["Patient"]  # only p1 is in g1, and it is exported whole
    assert member["id"] == "p1" and "birthDate" in member and not subsetted(member)


def test_include_associated_provenance(server: ServerProcess) -> None:
    client = server.client
    latest = run(client, "Group/g1/$export", {"_type": "Observation",
                                              "includeAssociatedData":
                                                  "LatestProvenanceResources"})
    assert ids(client, latest) == {"Observation": ["p1-o0", "p1-o1"], "Provenance": ["feb"]}
    relevant = run(client, "$export", [
        ("_type", "Observation,Practitioner"),
        ("includeAssociatedData", "LatestProvenanceResources"),
        ("includeAssociatedData", "RelevantProvenanceResources")])
    assert ids(client, relevant)["Provenance"] == ["doc", "feb", "jan"]
    listed = run(client, "Patient/$export", {
        "_type": "Observation", "patient": "Patient/p2",
        "includeAssociatedData": "RelevantProvenanceResources,LatestProvenanceResources"})
    assert "Provenance" not in ids(client, listed)  # p2's observations have none
    once = run(client, "$export", {"_type": "Observation,Provenance",
                                   "includeAssociatedData": "RelevantProvenanceResources"})
    assert ids(client, once)["Provenance"] == ["doc", "feb", "jan"]  # not written twice
    unknown = {"_type": "Patient", "includeAssociatedData": "_relevantProvenance,Nope"}
    refused = client.get("$export", params=unknown, headers=KICK_OFF)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["includeAssociatedData"]
    lenient = run(client, "$export", unknown, headers=LENIENT)
    assert ids(client, lenient) == {"Patient": ["p1", "p2"]}
    assert len(reported(client, lenient)) == 2


def test_associated_provenance_needs_a_scope_for_provenance(database_url: str,
                                                            tmp_path: Path) -> None:
    """A token that may export Observation but not Provenance cannot have Provenance
    written through includeAssociatedData."""
    key = BackendKey(tmp_path)
    clients = {scope: cli_json("auth", "client", "create", "--db", database_url, "--name",
                               scope, "--scopes", scope, "--jwks-file",
                               str(key.jwks_file))["client_id"]
               for scope in ("system/Observation.rs", "system/*.rs")}
    server = ServerProcess(database_url, "--auth", "--secret-key-file",
                           str(tmp_path / "secret.key"), "--files", str(tmp_path / "files"))
    try:
        query = {"_type": "Observation", "includeAssociatedData": "RelevantProvenanceResources"}
        for scope, status in (("system/Observation.rs", 403), ("system/*.rs", 202)):
            token = backend_token(server.base, clients[scope], key, scope).json()
            response = server.client.get("$export", params=query,
                                         headers={**KICK_OFF, **bearer(token["access_token"])})
            assert response.status_code == status, response.text
            if status == 403:
                issue = response.json()["issue"][0]
                assert issue["expression"] == ["includeAssociatedData"]
                assert "Provenance" in issue["diagnostics"]
    finally:
        server.stop()
