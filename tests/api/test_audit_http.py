"""The audit trail over real HTTP, through a real ``hygeia serve --audit`` process."""

from __future__ import annotations

import base64

import orjson

from tests.conftest import ServerProcess
from tests.helpers import patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def test_audit_over_http(database_url: str) -> None:
    server = ServerProcess(database_url, "--audit")
    try:
        client = server.client
        provenance = {"resourceType": "Provenance", "agent": [{"who": {"display": "Dr Ada"}}]}
        created = client.post("Patient", content=orjson.dumps(patient("h")), headers={
            **FHIR_JSON, "X-Provenance": orjson.dumps(provenance).decode()})
        assert created.status_code == 201
        id = created.json()["id"]
        assert client.get(f"Patient/{id}").status_code == 200
        assert client.get("Observation", params={"patient": id}).status_code == 200

        trail = client.get("AuditEvent", params={"patient": id, "_sort": "date"}).json()
        events = [entry["resource"] for entry in trail["entry"]]
        assert [e["subtype"][0]["code"] for e in events] == ["create", "read", "search-type"]
        client_agent = events[1]["agent"][0]
        assert client_agent["network"]["address"] == "127.0.0.1"
        query = next(e for e in events[2]["entity"] if e["role"]["code"] == "24")
        assert base64.b64decode(query["query"]).decode().endswith(f"Observation?patient={id}")

        target = client.get("Provenance", params={"target": f"Patient/{id}"}).json()
        assert target["entry"][0]["resource"]["target"] == [
            {"reference": f"Patient/{id}/_history/1"}]

        event_id = events[0]["id"]
        for response in (
                client.post("AuditEvent", content=orjson.dumps(events[0]), headers=FHIR_JSON),
                client.put(f"AuditEvent/{event_id}", content=orjson.dumps(events[0]),
                           headers=FHIR_JSON),
                client.delete(f"AuditEvent/{event_id}")):
            assert response.status_code == 405
            assert response.json()["resourceType"] == "OperationOutcome"
        assert client.get(f"AuditEvent/{event_id}").json() == events[0]

        bad = client.post("Patient", content=orjson.dumps(patient("x")),
                          headers={**FHIR_JSON, "X-Provenance": "{nope"})
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
        failures = client.get("AuditEvent", params={"outcome": "4", "subtype": "create"}).json()
        assert failures["total"] == 2  # the refused AuditEvent create and the bad header
    finally:
        server.stop()
