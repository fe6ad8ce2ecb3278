"""drug-allergy (order-select), duplicate-order (order-sign) and care-gaps (patient-view),
on SQLite and PostgreSQL, reading the store for what the call does not prefetch."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hygeia.clinical.cds.mount import CdsMount
from hygeia.clinical.cds.services import built_in
from hygeia.fhir.datetime import format_instant, now_us
from hygeia.server import FhirService
from tests.clinical.cds.test_services import answer, refused, store

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                      "code": "active"}]}


@pytest.fixture
def mount(service: FhirService) -> CdsMount:
    return CdsMount(service, built_in(3600, 30))


def medication(id: str, code: str, display: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": id, "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                      "display": display}]},
            "subject": {"reference": "Patient/x"}, **extra}


def order_call(hook: str, patient: str, orders: list[dict[str, Any]],
               selections: list[str] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": "Practitioner/dr", "patientId": patient,
        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                        "entry": [{"resource": order} for order in orders]}}
    if hook == "order-select":
        context["selections"] = selections or []
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}


def allergy(patient: str, text: str, criticality: str, coding: dict[str, str] | None = None
            ) -> dict[str, Any]:
    code: dict[str, Any] = {"text": text}
    if coding:
        code["coding"] = [coding]
    return {"resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{patient}"},
            "criticality": criticality, "code": code}


def test_drug_allergy_by_ingredient_class_and_criticality(service: FhirService,
                                                         mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient"})
    store(service, allergy(patient, "Penicillin", "high",
                           {"system": SNOMED, "code": "91936005"}),
          allergy(patient, "Aspirin", "low", {"system": RXNORM, "code": "1191"}))
    augmentin = medication("a1", "562251", "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet")
    ibuprofen = medication("i1", "310965", "Ibuprofen 200 MG Oral Tablet")
    paracetamol = medication("p1", "313782", "Acetaminophen 325 MG Oral Tablet")
    cards = answer(mount, "/cds-services/drug-allergy", order_call(
        "order-select", patient, [augmentin, ibuprofen, paracetamol],
        ["MedicationRequest/a1", "MedicationRequest/i1", "MedicationRequest/p1"]))["cards"]
    assert [(card["indicator"], card["suggestions"][0]["actions"][0]["resourceId"])
            for card in cards] == [("critical", ["MedicationRequest/a1"]),
                                   ("warning", ["MedicationRequest/i1"])]
    assert "penicillin" in cards[0]["summary"] and cards[0]["overrideReasons"]
    assert cards[0]["selectionBehavior"] == "at-most-one"
    # only the selected orders are checked
    assert answer(mount, "/cds-services/drug-allergy", order_call(
        "order-select", patient, [augmentin], ["MedicationRequest/other"]))["cards"] == []


def test_order_select_needs_its_context(mount: CdsMount) -> None:
    call = order_call("order-select", "p", [])
    del call["context"]["selections"]
    assert refused(mount, "POST", "/cds-services/drug-allergy", call).issues[0].expression \
        == "context.selections"


def test_duplicate_order_within_the_window(service: FhirService, mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient"})
    recent = format_instant(now_us() - 2 * 86_400 * 1_000_000)[:10]
    long_ago = "2020-01-01"
    store(service, {**medication("x", "310965", "Ibuprofen 200 MG Oral Tablet"),
                    "status": "active", "authoredOn": recent,
                    "subject": {"reference": f"Patient/{patient}"}},
          {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
           "authoredOn": long_ago, "subject": {"reference": f"Patient/{patient}"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}})
    drafts = [medication("d1", "310965", "Ibuprofen 200 MG Oral Tablet"),
              {"resourceType": "ServiceRequest", "id": "d2", "status": "draft",
               "intent": "order", "subject": {"reference": f"Patient/{patient}"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}}]
    [card] = answer(mount, "/cds-services/duplicate-order",
                    order_call("order-sign", patient, drafts))["cards"]
    assert card["indicator"] == "warning" and recent in card["summary"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == ["MedicationRequest/d1"]


def test_care_gaps_with_evidence(service: FhirService, mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient", "birthDate": "1960-01-01"})
    reference = {"reference": f"Patient/{patient}"}
    store(service, {"resourceType": "Condition", "subject": reference,
                    "clinicalStatus": ACTIVE,
                    "code": {"coding": [{"system": SNOMED, "code": "44054006"}]}},
          {"resourceType": "Condition", "subject": reference, "clinicalStatus": ACTIVE,
           "code": {"coding": [{"system": SNOMED, "code": "38341003"}]}},
          {"resourceType": "Observation", "status": "final", "subject": reference,
           "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
           "effectiveDateTime": "2020-05-01", "valueQuantity": {"value": 7.1, "unit": "%"}},
          {"resourceType": "Observation", "status": "final", "subject": reference,
           "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
           "effectiveDateTime": format_instant(now_us() - 86_400_000_000),
           "valueQuantity": {"value": 130, "unit": "mm[Hg]"}})
    call = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/dr", "patientId": patient}}
    cards = {card["summary"]: card for card in
             answer(mount, "/cds-services/care-gaps", call)["cards"]}
    assert set(cards) == {"Diabetes without an HbA1c in 6 months",
                          "No influenza immunization this season"}
    assert "2020-05-01" in cards["Diabetes without an HbA1c in 6 months"]["detail"]
    store(service, {"resourceType": "Immunization", "status": "completed", "patient": reference,
                    "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx",
                                                "code": "140"}]},
                    "occurrenceDateTime": format_instant(now_us())})
    cards = {card["summary"] for card in answer(mount, "/cds-services/care-gaps",
                                                call)["cards"]}
    assert cards == {"Diabetes without an HbA1c in 6 months"}


def test_drug_allergy_sign_checks_every_draft_being_signed(service: FhirService,
                                                          mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient"})
    store(service, allergy(patient, "Penicillin", "high", {"system": SNOMED, "code": "91936005"}))
    augmentin = medication("a1", "562251", "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet")
    paracetamol = medication("p1", "313782", "Acetaminophen 325 MG Oral Tablet")
    [card] = answer(mount, "/cds-services/drug-allergy-sign", order_call(
        "order-sign", patient, [paracetamol, augmentin]))["cards"]
    assert card["indicator"] == "critical"
    assert card["suggestions"][0]["actions"][0]["resourceId"] == ["MedicationRequest/a1"]
    # it answers order-sign only; order-select stays with drug-allergy
    assert refused(mount, "POST", "/cds-services/drug-allergy-sign", order_call(
        "order-select", patient, [augmentin], ["MedicationRequest/a1"])).issues[0].expression \
        == "hook"


def test_duplicate_order_select_checks_only_the_selected_drafts(service: FhirService,
                                                                mount: CdsMount) -> None:
    [patient] = store(service, {"resourceType": "Patient"})
    store(service, {**medication("x", "310965", "Ibuprofen 200 MG Oral Tablet"),
                    "status": "active", "authoredOn": format_instant(now_us())[:10],
                    "subject": {"reference": f"Patient/{patient}"}})
    drafts = [medication("d1", "310965", "Ibuprofen 200 MG Oral Tablet"),
              medication("d2", "313782", "Acetaminophen 325 MG Oral Tablet")]
    [card] = answer(mount, "/cds-services/duplicate-order-select", order_call(
        "order-select", patient, drafts, ["MedicationRequest/d1"]))["cards"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == ["MedicationRequest/d1"]
    assert answer(mount, "/cds-services/duplicate-order-select", order_call(
        "order-select", patient, drafts, ["MedicationRequest/d2"]))["cards"] == []
