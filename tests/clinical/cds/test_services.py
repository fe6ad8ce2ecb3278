"""CDS Hooks 2.0 at /cds-services on SQLite and PostgreSQL: discovery, cards, errors,
feedback; prefetch sent by the client or read from the store."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from hygeia.clinical.cds.model import CdsService
from hygeia.clinical.cds.mount import CdsMount
from hygeia.clinical.cds.services import built_in
from hygeia.fhir.outcome import FhirError
from hygeia.server import FhirService
from hygeia.server.extensions import MountRequest, MountResponse
from tests.clinical.news2.test_engine import full_set, vital
from tests.helpers import body, call, unique

SNOMED = "http://snomed.info/sct"


def send(mount: CdsMount, method: str, path: str, payload: Any = None) -> MountResponse:
    raw = payload if isinstance(payload, bytes) else \
        (b"" if payload is None else orjson.dumps(payload))
    return mount.handle(MountRequest(method, path, [], {}, raw, "http://test"))


def answer(mount: CdsMount, path: str, payload: Any) -> dict[str, Any]:
    response = send(mount, "POST", path, payload)
    assert response.status == 200, response.body
    assert isinstance(response.body, bytes)
    return dict(orjson.loads(response.body))


def refused(mount: CdsMount, method: str, path: str, payload: Any = None) -> FhirError:
    with pytest.raises(FhirError) as raised:
        send(mount, method, path, payload)
    return raised.value


def hook_call(patient: str, prefetch: dict[str, Any] | None = None,
              hook: str = "patient-view") -> dict[str, Any]:
    request: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()),
                               "context": {"userId": "Practitioner/nurse",
                                           "patientId": patient}}
    if prefetch is not None:
        request["prefetch"] = prefetch
    return request


@pytest.fixture
def mount(service: FhirService) -> CdsMount:
    return CdsMount(service, built_in(3600))


def store(service: FhirService, *resources: dict[str, Any]) -> list[str]:
    ids = []
    for resource in resources:
        response = call(service, "POST", resource["resourceType"], resource)
        assert response.status == 201, body(response)
        ids.append(str(body(response)["id"]))
    return ids


def test_discovery_lists_the_services_with_their_prefetch(mount: CdsMount) -> None:
    response = send(mount, "GET", "/cds-services")
    assert response.status == 200 and isinstance(response.body, bytes)
    services = {s["id"]: s for s in orjson.loads(response.body)["services"]}
    assert {id: s["hook"] for id, s in services.items()} == {
        "news2": "patient-view", "qsofa": "patient-view", "drug-allergy": "order-select",
        "duplicate-order": "order-sign", "care-gaps": "patient-view",
        "drug-allergy-sign": "order-sign", "duplicate-order-select": "order-select"}
    assert services["news2"]["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert all(s["title"] and s["description"] for s in services.values())


def test_news2_reads_the_store_when_prefetch_is_absent(service: FhirService,
                                                       mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient", "birthDate": "1950-01-01"})
    store(service, *full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=26,
                             spo2=90, pulse=135))
    [card] = answer(mount, "/cds-services/news2", hook_call(patient))["cards"]
    assert card["summary"] == "NEWS2 9: high clinical risk"
    assert card["indicator"] == "critical"
    assert card["source"]["label"].startswith("Hygeia NEWS2")
    assert "continuous" in card["detail"] and "air assumed" in card["detail"]
    assert card["links"][0]["type"] == "absolute"


def test_news2_uses_the_prefetch_sent(service: FhirService, mount: CdsMount) -> None:
    patient = unique()  # not in the store: everything comes from the prefetch
    vitals = full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=22)
    prefetch = {"patient": {"resourceType": "Patient", "id": patient,
                            "birthDate": "1960-05-05"},
                "vitals": {"resourceType": "Bundle", "type": "searchset",
                           "entry": [{"resource": {**v, "id": str(i)}}
                                     for i, v in enumerate(vitals)]},
                "flags": None, "pregnancy": None}
    [card] = answer(mount, "/cds-services/news2", hook_call(patient, prefetch))["cards"]
    assert (card["summary"], card["indicator"]) == ("NEWS2 2: low clinical risk", "info")


def test_news2_says_when_it_does_not_apply_or_is_partial(service: FhirService,
                                                         mount: CdsMount) -> None:
    [child] = store(service, {"resourceType": "Patient", "birthDate": "2020-01-01"})
    store(service, *full_set(f"Patient/{child}", "2026-03-01T10:00:00Z"))
    [card] = answer(mount, "/cds-services/news2", hook_call(child))["cards"]
    assert "under 16" in card["summary"]
    [adult] = store(service, {"resourceType": "Patient", "birthDate": "1950-01-01"})
    store(service, vital(f"Patient/{adult}", "8867-4", "2026-03-01T10:00:00Z", 120))
    [card] = answer(mount, "/cds-services/news2", hook_call(adult))["cards"]
    assert card["summary"].startswith("NEWS2 at least 2 (partial") and \
        card["indicator"] == "info"
    [nobody] = store(service, {"resourceType": "Patient"})
    [card] = answer(mount, "/cds-services/news2", hook_call(nobody))["cards"]
    assert card["summary"] == "NEWS2: no vital signs recorded"


def test_qsofa_needs_suspected_infection(service: FhirService, mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient", "birthDate": "1950-01-01"})
    store(service, *full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=24,
                             systolic=95))
    assert answer(mount, "/cds-services/qsofa", hook_call(patient))["cards"] == []
    store(service, {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"},
                    "clinicalStatus": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active"}]},
                    "code": {"coding": [{"system": SNOMED, "code": "233604007"}]}})
    [card] = answer(mount, "/cds-services/qsofa", hook_call(patient))["cards"]
    assert card["summary"].startswith("qSOFA 2: high risk") and card["indicator"] == "warning"


@pytest.mark.parametrize(("payload", "expression"), [
    (b"not json", "body"),
    ([1, 2], "body"),
    ({"hook": "order-sign", "hookInstance": "x", "context": {}}, "hook"),
    ({"hook": "patient-view", "context": {"userId": "u", "patientId": "p"}}, "hookInstance"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {"userId": "u"}},
     "context.patientId"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {"userId": "u", "patientId": "p"},
      "prefetch": {"patient": 3}}, "prefetch.patient"),
])
def test_a_malformed_call_is_a_400_naming_the_field(mount: CdsMount, payload: Any,
                                                    expression: str) -> None:
    error = refused(mount, "POST", "/cds-services/news2", payload)
    assert error.status == 400 and error.issues[0].expression == expression


def test_unknown_service_wrong_method_and_foreign_server(mount: CdsMount) -> None:
    assert refused(mount, "POST", "/cds-services/nothing", {}).status == 404
    assert refused(mount, "GET", "/cds-services/news2").status == 405
    foreign = {**hook_call("p"), "fhirServer": "http://127.0.0.1:9/fhir"}  # not allowed
    assert refused(mount, "POST", "/cds-services/news2", foreign).status == 412


def test_feedback_is_stored_and_searchable(service: FhirService, mount: CdsMount) -> None:
    card = str(uuid.uuid4())
    response = send(mount, "POST", "/cds-services/news2/feedback", {"feedback": [
        {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:05:00Z",
         "overrideReason": {"reason": {"system": "urn:example", "code": "seen"},
                            "userComment": "already escalated"}}]})
    assert response.status == 200
    found = body(call(service, "GET", "Basic?code=urn:hygeia:codesystem:cds-feedback|news2"
                      f"&identifier=urn:hygeia:cds-card|{card}"))
    [entry] = found["entry"]
    urls = {e["url"].rsplit("-", 1)[-1]: e for e in entry["resource"]["extension"]}
    assert urls["outcome"]["valueCode"] == "overridden"
    assert refused(mount, "POST", "/cds-services/news2/feedback",
                   {"feedback": [{"card": card, "outcome": "maybe"}]}).status == 400


def test_a_failing_service_breaks_no_other(service: FhirService) -> None:
    def broken(call: object) -> list[dict[str, Any]]:
        raise RuntimeError("a bug")

    failing = CdsService("broken", "patient-view", "Broken", "Always fails.", {}, broken)
    mount = CdsMount(service, [failing, *built_in(3600)])
    response = send(mount, "POST", "/cds-services/broken", hook_call("p"))
    assert response.status == 500 and isinstance(response.body, bytes)
    assert orjson.loads(response.body)["resourceType"] == "OperationOutcome"
    [card] = answer(mount, "/cds-services/news2", hook_call("p"))["cards"]
    assert card["summary"] == "NEWS2: no vital signs recorded"


def test_news2_card_in_pregnancy(service: FhirService, mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient", "birthDate": "1990-01-01"})
    store(service, {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"},
                    "clinicalStatus": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active"}]},
                    "code": {"coding": [{"system": SNOMED, "code": "77386006"}]}},
          *full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z"))
    [card] = answer(mount, "/cds-services/news2", hook_call(patient))["cards"]
    assert card["summary"] == "NEWS2 does not apply in pregnancy"
