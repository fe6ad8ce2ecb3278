"""What a single claim reads of its member's record, in one search, on both backends."""

from __future__ import annotations

from typing import Any

from hygeia.insurance.plan import demo_resources
from hygeia.insurance.records import patient_record
from hygeia.insurance.steps import adjudicate
from hygeia.server import FhirService
from hygeia.server.rest import write
from hygeia.store import Repository, Session

CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
BC = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
SNOMED = "http://snomed.info/sct"


def coverage(id: str, beneficiary: str, status: str = "active", **more: Any
             ) -> dict[str, Any]:
    return {"resourceType": "Coverage", "id": id, "status": status,
            "subscriberId": f"SUB-{id}", "beneficiary": {"reference": beneficiary},
            "payor": [{"reference": "Organization/demo-payer"}],
            "period": {"start": "2026-01-01"},
            "class": [{"type": {"coding": [{"system": CLASS, "code": "plan"}]},
                       "value": "DEMO-PPO"}], **more}


def condition(id: str, subject: str, code: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": id, "subject": {"reference": subject},
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": code}]},
            "onsetDateTime": "2025-01-01", **more}


def a_member(session: Session) -> None:
    """Patient p and q; p's active and cancelled Coverages, q's Coverage that p
    subscribes to; a Condition of each, and one of q that p asserted."""
    for resource in [*demo_resources(),
                     {"resourceType": "Patient", "id": "p", "gender": "female",
                      "birthDate": "1990-02-03"},
                     {"resourceType": "Patient", "id": "q"},
                     coverage("cov-p", "Patient/p"),
                     coverage("old-p", "Patient/p", "cancelled"),
                     coverage("cov-q", "Patient/q", subscriber={"reference": "Patient/p"}),
                     condition("c-p", "Patient/p", "44054006"),
                     condition("c-q", "Patient/q", "44054006",
                               asserter={"reference": "Patient/p"}),
                     {"resourceType": "Encounter", "id": "e-p", "status": "finished",
                      "class": {"code": "AMB"}, "subject": {"reference": "Patient/p"}}]:
        write.update(session, resource["resourceType"], resource["id"], resource)


def test_patient_record_reads_the_patient_and_what_references_it_through_the_params(
        repository: Repository) -> None:
    service = FhirService(repository)
    with service.transaction() as session:
        a_member(session)
    with service.reader() as session:
        found = patient_record(session, "p", ("Patient", "Coverage", "Condition"),
                               ("beneficiary", "patient"))
        assert found is not None
        assert sorted(f"{r['resourceType']}/{r['id']}" for r in found) == [
            "Condition/c-p", "Coverage/cov-p", "Coverage/old-p", "Patient/p"]
        without = patient_record(session, "p", ("Patient", "Coverage"), ("beneficiary",))
        assert without is not None and len(without) == 3
        assert patient_record(session, "p", ("Patient", "Coverage", "Condition"),
                              ("beneficiary", "patient"), limit=4) is None  # may be cut


def test_a_single_claim_reads_its_member_in_one_search(repository: Repository) -> None:
    """The claim's Coverage, the patient's active Coverages (not the cancelled one, not
    the one they only subscribe to), the Patient, and their Conditions when the claim
    names a diagnosis, as ``steps`` reads them for itself."""
    service = FhirService(repository)
    with service.transaction() as session:
        a_member(session)
    claim: dict[str, Any] = {
        "resourceType": "Claim", "status": "active", "use": "claim",
        "patient": {"reference": "Patient/p"}, "created": "2026-03-01",
        "billablePeriod": {"start": "2026-03-01"},
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": {"reference": "Coverage/cov-p"}}],
        "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {
            "coding": [{"system": SNOMED, "code": "44054006"}]}}],
        "item": [{"sequence": 1, "diagnosisSequence": [1],
                  "encounter": [{"reference": "Encounter/e-p"}],
                  "category": {"coding": [{"system": BC, "code": "1"}]},
                  "productOrService": {"coding": [{"system": SNOMED, "code": "185349003"}]},
                  "net": {"value": 80, "currency": "USD"}}]}
    with service.transaction() as session:
        checked = adjudicate(session, claim)
        assert checked.errors == [] and checked.pended == [] and checked.outcome == "complete"
        assert checked.coverage is not None and checked.coverage["id"] == "cov-p"
        assert [c["id"] for c in checked.cache[("coverages", "Patient/p")]] == ["cov-p"]
        assert checked.cache[("read", "Patient/p")]["birthDate"] == "1990-02-03"
        assert [c["id"] for c in checked.cache[("conditions", "Patient/p")]] == ["c-p"]
        plain = adjudicate(session, {**claim, "diagnosis": [],
                                     "item": [{**claim["item"][0], "diagnosisSequence": []}]})
        assert ("conditions", "Patient/p") not in plain.cache  # no diagnosis: not read
        assert [c["id"] for c in plain.cache[("coverages", "Patient/p")]] == ["cov-p"]
