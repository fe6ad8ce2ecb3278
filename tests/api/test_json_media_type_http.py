"""``Accept: application/json`` is answered as ``application/json`` (FHIR treats it as
the same format as application/fhir+json, http.html#mime), error responses included."""

from __future__ import annotations

import uuid

import httpx
import orjson

PLAIN = {"Accept": "application/json"}


def content_type(response: httpx.Response) -> str:
    return response.headers["Content-Type"].split(";", 1)[0]


def test_plain_json_accept_gets_plain_json_back(client: httpx.Client) -> None:
    id = f"json-{uuid.uuid4().hex[:8]}"
    created = client.put(f"Patient/{id}", headers={**PLAIN,
                                                   "Content-Type": "application/json"},
                         content=orjson.dumps({"resourceType": "Patient", "id": id}))
    assert created.status_code == 201 and content_type(created) == "application/json"
    read = client.get(f"Patient/{id}", headers=PLAIN)
    assert read.status_code == 200 and content_type(read) == "application/json"
    assert read.json()["id"] == id
    missing = client.get("Patient/nobody-at-all", headers=PLAIN)
    assert missing.status_code == 404 and content_type(missing) == "application/json"
    assert missing.json()["resourceType"] == "OperationOutcome"
    bad = client.get("Patient", params={"birthdate": "not-a-date"}, headers=PLAIN)
    assert bad.status_code == 400 and content_type(bad) == "application/json"
    kick_off = client.get("$export", params={"_type": "Patient"},
                          headers={**PLAIN, "Prefer": "respond-async"})
    assert kick_off.status_code == 202 and content_type(kick_off) == "application/json"
    assert client.delete(kick_off.headers["Content-Location"]).status_code == 202


def test_fhir_json_stays_the_default(client: httpx.Client) -> None:
    for accept in (None, "application/fhir+json", "application/fhir+json, application/json",
                   "*/*"):
        headers = {"Accept": accept} if accept else {}
        response = client.get("Patient/nobody-at-all", headers=headers)
        assert content_type(response) == "application/fhir+json", accept
