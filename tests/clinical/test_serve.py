"""The clinical pillar in a real ``hygeia serve`` process: vitals over HTTP become a NEWS2
score and an alert; a CDS client calls discovery, a service and feedback over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.clinical.cds.test_auth import ISSUER, public_jwks, signed
from tests.clinical.news2.test_engine import NEWS2, full_set
from tests.conftest import ServerProcess


@pytest.fixture
def server(clinical_pillar: None, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(f"sqlite:///{tmp_path}/clinical.db")
    try:
        yield process
    finally:
        process.stop()


def created(server: ServerProcess, resource: dict[str, Any]) -> str:
    response = server.client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_for(search: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = search()
        if found:
            return list(found)
        time.sleep(0.2)
    raise AssertionError("nothing appeared in time")


def test_vitals_over_http_raise_a_news2_alert(server: ServerProcess) -> None:
    patient = "Patient/" + created(server, {"resourceType": "Patient",
                                            "birthDate": "1948-02-03"})
    created(server, {"resourceType": "CareTeam", "status": "active",
                     "subject": {"reference": patient},
                     "participant": [{"member": {"reference": "Practitioner/ward-nurse"}}]})
    for vital in full_set(patient, "2026-03-01T10:00:00Z", respiration=26, spo2=90,
                          pulse=135):
        created(server, vital)

    def high_scores() -> list[dict[str, Any]]:
        bundle = server.client.get(f"Observation?patient={patient}&code={NEWS2}").json()
        return [entry["resource"] for entry in bundle.get("entry", [])
                if entry["resource"]["status"] == "final"]

    [score] = wait_for(high_scores)
    assert score["valueInteger"] == 9 and len(score["derivedFrom"]) == 6
    [flag] = wait_for(lambda: server.client.get(f"Flag?patient={patient}").json()
                      .get("entry", []))
    assert flag["resource"]["identifier"][0]["value"] == f"news2-high|{patient}"
    [message] = server.client.get(f"Communication?patient={patient}").json()["entry"]
    assert message["resource"]["recipient"] == [{"reference": "Practitioner/ward-nurse"}]


def test_a_cds_client_over_http(server: ServerProcess, tmp_path: Path) -> None:
    root = server.base.removesuffix("/fhir")
    discovery = httpx.get(f"{root}/cds-services", timeout=10)
    assert discovery.status_code == 200
    assert {s["id"] for s in discovery.json()["services"]} >= {"news2", "qsofa"}
    patient = created(server, {"resourceType": "Patient", "birthDate": "1950-01-01"})
    for vital in full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=22):
        created(server, vital)
    hook = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "fhirServer": server.base,
            "context": {"userId": "Practitioner/nurse", "patientId": patient}}
    answer = httpx.post(f"{root}/cds-services/news2", json=hook, timeout=10)
    assert answer.status_code == 200, answer.text
    [card] = answer.json()["cards"]
    assert card["summary"] == "NEWS2 2: low clinical risk"
    bad = httpx.post(f"{root}/cds-services/news2", json={"hook": "patient-view"}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["hookInstance"]
    feedback = httpx.post(f"{root}/cds-services/news2/feedback", timeout=10, json={
        "feedback": [{"card": card["uuid"], "outcome": "accepted",
                      "outcomeTimestamp": "2026-03-01T10:06:00Z"}]})
    assert feedback.status_code == 200
    stored = server.client.get(f"Basic?identifier=urn:hygeia:cds-card|{card['uuid']}").json()
    # an EHR registered with its keys signs its calls; the audience is this server's URL
    key = ec.generate_private_key(ec.SECP384R1())
    keys = tmp_path / "ehr.jwks"
    keys.write_text(json.dumps(public_jwks(key)))
    added = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "cds", "client", "add",
                            "--issuer", ISSUER, "--jwks-file", str(keys), "--db",
                            server.db_url], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    token = signed(key, aud=f"{root}/cds-services/news2")
    signed_call = httpx.post(f"{root}/cds-services/news2", timeout=10,
                             json={**hook, "hookInstance": str(uuid.uuid4())},
                             headers={"Authorization": f"Bearer {token}"})
    assert signed_call.status_code == 200, signed_call.text
    replayed = httpx.post(f"{root}/cds-services/news2", json=hook, timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    assert replayed.status_code == 401
    assert replayed.json()["issue"][0]["expression"] == ["Authorization"]
    assert [entry["resource"]["code"]["coding"][0]["code"] for entry in stored["entry"]] == \
        ["news2"]


def test_with_auth_a_call_needs_the_ehr_jwt(clinical_pillar: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/auth.db"
    server = ServerProcess(url, "--auth")
    try:
        root = server.base.removesuffix("/fhir")
        assert httpx.get(f"{root}/cds-services", timeout=10).status_code == 200
        hook = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/nurse", "patientId": "p-1"}}
        unsigned = httpx.post(f"{root}/cds-services/news2", json=hook, timeout=10)
        assert unsigned.status_code == 401
        assert "requires a CDS Hooks JWT" in unsigned.json()["issue"][0]["diagnostics"]
        key = ec.generate_private_key(ec.SECP384R1())
        keys = tmp_path / "ehr.jwks"
        keys.write_text(json.dumps(public_jwks(key)))
        added = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "cds", "client",
                                "add", "--issuer", ISSUER, "--jwks-file", str(keys),
                                "--db", url], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        token = signed(key, aud=f"{root}/cds-services/news2")
        answered = httpx.post(f"{root}/cds-services/news2", json=hook, timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        assert answered.status_code == 200, answered.text
        assert answered.json()["cards"][0]["summary"] == "NEWS2: no vital signs recorded"
    finally:
        server.stop()


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": {**resource, "id": resource.get("id", str(index))}}
                      for index, resource in enumerate(resources)]}


def test_every_built_in_service_over_http_with_prefetch(server: ServerProcess) -> None:
    root = server.base.removesuffix("/fhir")
    patient = "prefetched-only"  # nothing in the store: every input is in the prefetch
    active = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                          "code": "active"}]}
    vitals = full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=23,
                      systolic=99)
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    draft = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft",
             "intent": "order", "subject": {"reference": f"Patient/{patient}"},
             "medicationCodeableConcept": {"coding": [{
                 "system": rxnorm, "code": "308182",
                 "display": "Amoxicillin 250 MG Oral Capsule"}]}}
    orders = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
    patient_view = {"userId": "Practitioner/dr", "patientId": patient}
    calls = {
        "news2": ("patient-view", patient_view, {
            "patient": {"resourceType": "Patient", "id": patient, "birthDate": "1940-01-01"},
            "vitals": bundle(*vitals), "flags": None, "pregnancy": None}),
        "qsofa": ("patient-view", patient_view, {
            "vitals": bundle(*vitals), "infections": bundle({
                "resourceType": "Condition", "clinicalStatus": active,
                "code": {"coding": [{"system": "http://snomed.info/sct",
                                     "code": "91302008"}]}})}),
        "drug-allergy": ("order-select", {**patient_view, "draftOrders": orders,
                                          "selections": ["MedicationRequest/draft-1"]}, {
            "allergies": bundle({"resourceType": "AllergyIntolerance", "id": "al-1",
                                 "criticality": "low", "code": {"text": "Penicillin V"}})}),
        "duplicate-order": ("order-sign", {**patient_view, "draftOrders": orders}, {
            "medications": bundle({**draft, "id": "old-1", "status": "active"}),
            "services": None}),
        "care-gaps": ("patient-view", patient_view, {
            "patient": {"resourceType": "Patient", "id": patient, "birthDate": "1940-01-01"},
            "conditions": None, "observations": None, "immunizations": None}),
    }
    summaries = {}
    for service, (hook, context, prefetch) in calls.items():
        answered = httpx.post(f"{root}/cds-services/{service}", timeout=10, json={
            "hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": prefetch})
        assert answered.status_code == 200, (service, answered.text)
        summaries[service] = [card["summary"] for card in answered.json()["cards"]]
    assert summaries == {
        "news2": ["NEWS2 4: low clinical risk"],
        "qsofa": ["qSOFA 2: high risk of poor outcome in suspected infection"],
        "drug-allergy": ["Allergy: Amoxicillin 250 MG Oral Capsule contains amoxicillin, of "
                         "the penicillin class the patient is allergic to"],
        "duplicate-order": ["Duplicate: Amoxicillin 250 MG Oral Capsule is already ordered "
                            "(date unknown)"],
        "care-gaps": ["No influenza immunization this season"],
    }
