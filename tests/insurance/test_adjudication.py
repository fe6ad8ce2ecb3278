"""The demo plan's cost shares over real HTTP, hand-computed, on SQLite and PostgreSQL.

A family of three (one subscriber id) on DEMO-PPO. Every adjudicated response is
checked to reconcile: submitted = eligible + noncovered, eligible = benefit +
memberliability, per line and in the totals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import BACKENDS, ServerProcess, backend_server

ENTRY = "hygeia.insurance.pillar:PILLAR"
BC = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """A server with the insurance pillar (installed with the package) and its demo plan."""
    with backend_server(request, tmp_path_factory, "ins") as process:
        demo = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "insurance", "demo",
                               "--db", process.db_url], capture_output=True, text=True,
                              check=False)
        assert demo.returncode == 0, demo.stderr
        yield process


def decimal_json(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.text, parse_float=Decimal))


def amounts(adjudication: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {a["category"]["coding"][0]["code"]: Decimal(a["amount"]["value"])
            for a in adjudication}


def reconciles(response: dict[str, Any]) -> None:
    for part in [*[i["adjudication"] for i in response["item"]], response["total"]]:
        got = amounts(part)
        assert got["submitted"] == got["eligible"] + got["noncovered"]
        assert got["eligible"] == got["benefit"] + got["memberliability"]
        assert got["memberliability"] == got["deductible"] + got["copay"] + got["coinsurance"]


def make(server: ServerProcess, resource: dict[str, Any]) -> str:
    response = server.client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    return f"{resource['resourceType']}/{response.json()['id']}"


def member(server: ServerProcess, subscriber: str,
           subscriber_ref: str | None = None) -> tuple[str, str]:
    patient = make(server, {"resourceType": "Patient", "name": [{"family": "Member"}]})
    coverage = make(server, {
        "resourceType": "Coverage", "status": "active", "subscriberId": subscriber,
        **({"subscriber": {"reference": subscriber_ref}} if subscriber_ref else {}),
        "beneficiary": {"reference": patient}, "payor": [{"reference":
                                                          "Organization/demo-payer"}],
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                        "coverage-class", "code": "plan"}]},
                   "value": "DEMO-PPO"}]})
    return patient, coverage


def claim(patient: str, coverage: str, date: str, *items: tuple[str, str, str],
          diagnosis: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Claim", "status": "active", "use": "claim", "priority": {"coding": [{
            "code": "normal"}]}, "created": date,
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "professional"}]},
        "patient": {"reference": patient}, "provider": {"reference": "Organization/clinic"},
        "billablePeriod": {"start": date},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": coverage}}],
        "item": [{"sequence": n + 1, "category": {"coding": [{"system": BC, "code": cat}]},
                  "productOrService": {"coding": [{"system": code.rpartition("|")[0] or
                                                   "urn:test", "code": code.rpartition("|")[2]}]},
                  "net": {"value": float(net), "currency": "USD"}}
                 for n, (cat, code, net) in enumerate(items)]}
    if diagnosis:
        body["diagnosis"] = [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [{
            "system": "http://snomed.info/sct", "code": diagnosis}]}}]
        body["item"][0]["diagnosisSequence"] = [1]
    return body


def submit(server: ServerProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = server.client.post("Claim/$submit", json=body)
    assert response.status_code == 200, response.text
    result = decimal_json(response)
    if result["outcome"] == "complete":
        reconciles(result)
    return result


def totals(response: dict[str, Any]) -> dict[str, Decimal]:
    return amounts(response["total"])


def test_family_cost_shares_add_up_to_the_hand_computed_amounts(server: ServerProcess) -> None:
    subscriber = f"S-{os.urandom(4).hex()}"
    (a, a_cov), (b, b_cov), (c, c_cov) = (member(server, subscriber) for _ in range(3))
    first = submit(server, claim(a, a_cov, "2026-02-01", ("1", "X1", "300")))
    assert totals(first)["deductible"] == Decimal("300") and totals(first)["benefit"] == 0
    visit = submit(server, claim(a, a_cov, "2026-02-02",
                                 ("3", "http://www.ama-assn.org/go/cpt|99213", "150")))
    # the fee schedule allows 120.00 for CPT 99213; the copay is not subject to the deductible
    assert (totals(visit)["eligible"], totals(visit)["noncovered"]) == (Decimal("120"),
                                                                       Decimal("30"))
    assert (totals(visit)["copay"], totals(visit)["deductible"]) == (Decimal("25"), 0)
    assert totals(visit)["benefit"] == Decimal("95")
    assert visit["item"][0]["adjudication"][0]["reason"]["coding"][0]["code"] == \
        "above-fee-schedule"
    third = submit(server, claim(a, a_cov, "2026-02-03", ("1", "X2", "1000")))
    assert (totals(third)["deductible"], totals(third)["coinsurance"],
            totals(third)["benefit"]) == (Decimal("200"), Decimal("160"), Decimal("640"))
    sister = submit(server, claim(b, b_cov, "2026-02-04", ("1", "X3", "700")))
    assert (totals(sister)["deductible"], totals(sister)["coinsurance"]) == \
        (Decimal("500"), Decimal("40"))
    brother = submit(server, claim(c, c_cov, "2026-02-05", ("1", "X4", "100")))
    # the family deductible (1,000) is met: only coinsurance
    assert (totals(brother)["deductible"], totals(brother)["coinsurance"]) == \
        (Decimal("0"), Decimal("20"))
    big = submit(server, claim(a, a_cov, "2026-03-01", ("1", "X5", "10000")))
    # A has paid 300 + 25 + 360 = 685; the individual maximum leaves 1,315
    assert totals(big)["coinsurance"] == Decimal("1315")
    assert totals(big)["benefit"] == Decimal("8685")
    after = submit(server, claim(a, a_cov, "2026-03-02", ("1", "X6", "100")))
    assert totals(after)["memberliability"] == 0 and totals(after)["benefit"] == Decimal("100")
    eob = server.client.get("ExplanationOfBenefit",
                            params={"claim": after["request"]["reference"]}).json()
    assert eob["entry"][0]["resource"]["claimResponse"]["reference"] == \
        f"ClaimResponse/{after['id']}"
    balance = server.client.post("CoverageEligibilityRequest/$submit", json={
        "resourceType": "CoverageEligibilityRequest", "status": "active",
        "purpose": ["benefits"], "patient": {"reference": a}, "created": "2026-03-03",
        "servicedDate": "2026-03-03", "insurer": {"reference": "Organization/demo-payer"},
        "insurance": [{"coverage": {"reference": a_cov}}]})
    assert balance.status_code == 200, balance.text
    items = decimal_json(balance)["insurance"][0]["item"]
    used = {(i["unit"]["coding"][0]["code"], b["type"]["coding"][0]["code"]):
            Decimal(b["usedMoney"]["value"]) for i in items for b in i["benefit"]}
    assert used == {("individual", "deductible"): Decimal("500"),
                    ("individual", "out-of-pocket-maximum"): Decimal("2000"),
                    ("family", "deductible"): Decimal("1000"),
                    ("family", "out-of-pocket-maximum"): Decimal("2560")}


def test_mri_without_authorization_is_denied_with_a_reason(server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    denied = submit(server, claim(patient, coverage, "2026-04-01", ("62", "MRI1", "900")))
    assert denied["outcome"] == "complete"
    assert totals(denied)["noncovered"] == Decimal("900")
    reason = denied["item"][0]["adjudication"][0]["reason"]
    assert reason["coding"][0]["code"] == "no-prior-auth" and "approval" in reason["text"]


def test_undocumented_diagnosis_pends_and_inquire_finds_it(server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    pended = submit(server, claim(patient, coverage, "2026-05-01", ("1", "X7", "100"),
                                  diagnosis="44054006"))
    assert pended["outcome"] == "queued" and "44054006" in pended["disposition"]
    inquiry = server.client.post("Claim/$inquire", json={
        "resourceType": "Parameters", "parameter": [
            {"name": "claim", "valueReference": pended["request"]}]})
    assert inquiry.status_code == 200, inquiry.text
    assert inquiry.json()["id"] == pended["id"]


def test_exact_duplicate_is_denied(server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    submit(server, claim(patient, coverage, "2026-06-01", ("1", "X8", "50")))
    again = submit(server, claim(patient, coverage, "2026-06-01", ("1", "X8", "50")))
    assert totals(again)["noncovered"] == Decimal("50")
    assert again["item"][0]["adjudication"][0]["reason"]["coding"][0]["code"] == "duplicate"


def current_response(server: ServerProcess, claim_ref: str) -> dict[str, Any]:
    inquiry = server.client.post("Claim/$inquire", json={
        "resourceType": "Parameters", "parameter": [
            {"name": "claim", "valueReference": {"reference": claim_ref}}]})
    assert inquiry.status_code == 200, inquiry.text
    result = decimal_json(inquiry)
    reconciles(result)
    return result


def test_void_earlier_claim_and_corrections_readjudicate_later_claims(
        server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    first = submit(server, claim(patient, coverage, "2026-02-01", ("1", "V1", "300")))
    later = submit(server, claim(patient, coverage, "2026-02-10", ("1", "V2", "500")))
    later_ref = later["request"]["reference"]
    assert (totals(later)["deductible"], totals(later)["coinsurance"]) == (Decimal("200"),
                                                                           Decimal("60"))
    # void the first claim: the later one now meets the whole deductible itself
    first_ref = first["request"]["reference"]
    stored = server.client.get(first_ref).json()
    voided = server.client.put(first_ref, json={**stored, "status": "cancelled"})
    assert voided.status_code == 200, voided.text
    again = current_response(server, later_ref)
    assert (totals(again)["deductible"], totals(again)["coinsurance"],
            totals(again)["benefit"]) == (Decimal("500"), 0, 0)
    assert server.client.get(f"ClaimResponse/{first['id']}").json()["status"] == "cancelled"
    eob = server.client.get("ExplanationOfBenefit", params={"claim": later_ref}).json()
    assert amounts(eob["entry"][0]["resource"]["total"])["deductible"] == Decimal("500")
    # a claim of an earlier date, submitted late, is applied first
    early = submit(server, claim(patient, coverage, "2026-01-15", ("1", "V3", "100")))
    assert totals(early)["deductible"] == Decimal("100")
    again = current_response(server, later_ref)
    assert (totals(again)["deductible"], totals(again)["coinsurance"]) == (Decimal("400"),
                                                                           Decimal("20"))
    # a correction (related.claim prior) replaces it: 50 instead of 100
    correction = claim(patient, coverage, "2026-01-15", ("1", "V3", "50"))
    correction["related"] = [{"claim": early["request"], "relationship": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/related-claim-relationship",
        "code": "prior"}]}}]
    corrected = submit(server, correction)
    assert totals(corrected)["deductible"] == Decimal("50")
    again = current_response(server, later_ref)
    assert (totals(again)["deductible"], totals(again)["coinsurance"]) == (Decimal("450"),
                                                                           Decimal("10"))


def test_prior_authorization_documented_is_approved_and_lets_the_mri_pay(
        server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    make(server, {"resourceType": "Condition", "subject": {"reference": patient},
                  "code": {"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]},
                  "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/"
                                                 "CodeSystem/condition-clinical",
                                                 "code": "active"}]},
                  "onsetDateTime": "2026-01-02"})
    request = claim(patient, coverage, "2026-07-01", ("62", "MRI2", "900"),
                    diagnosis="279039007")
    undocumented = submit(server, {**claim(patient, coverage, "2026-07-01",
                                           ("62", "MRI2", "900"), diagnosis="22298006"),
                                   "use": "preauthorization"})
    assert undocumented["outcome"] == "queued" and "preAuthRef" not in undocumented
    approval = submit(server, {**request, "use": "preauthorization"})
    assert approval["outcome"] == "complete" and approval["preAuthRef"]
    assert approval["preAuthPeriod"] == {"start": "2026-07-01", "end": "2026-09-29"}
    request["insurance"][0]["preAuthRef"] = [approval["preAuthRef"]]
    too_late = submit(server, {**request, "billablePeriod": {"start": "2026-10-01"}})
    other = submit(server, claim(patient, coverage, "2026-07-02", ("62", "MRI3", "900")) | {
        "insurance": request["insurance"]})
    for denied in (too_late, other):  # outside the approval's period; another service
        assert denied["item"][0]["adjudication"][0]["reason"]["coding"][0]["code"] == \
            "no-prior-auth"
    paid = submit(server, request)
    # 900 allowed: deductible 500, 20% of 400 = 80
    assert (totals(paid)["deductible"], totals(paid)["coinsurance"],
            totals(paid)["benefit"]) == (Decimal("500"), Decimal("80"), Decimal("320"))


def test_a_reviewer_approves_a_pended_claim_from_the_command_line(
        server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    pended = submit(server, claim(patient, coverage, "2026-08-01", ("1", "R1", "100"),
                                  diagnosis="38341003"))
    assert pended["outcome"] == "queued"
    claim_id = pended["request"]["reference"].split("/")[1]
    task = server.client.get("Task", params={"focus": f"Claim/{claim_id}"}).json()
    assert task["entry"][0]["resource"]["status"] == "requested"
    decided = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "insurance", "review",
                              "--claim", claim_id, "--decision", "approve",
                              "--db", server.db_url], capture_output=True, text=True,
                             check=False)
    assert decided.returncode == 0, decided.stderr
    assert decided.stdout.startswith(f"Claim/{claim_id}: complete")
    settled = current_response(server, f"Claim/{claim_id}")
    assert settled["id"] == pended["id"]
    assert totals(settled)["deductible"] == Decimal("100")
    eob = server.client.get("ExplanationOfBenefit", params={"claim": f"Claim/{claim_id}"})
    assert eob.json()["total"] == 1
    task = server.client.get("Task", params={"focus": f"Claim/{claim_id}"}).json()
    assert task["entry"][0]["resource"]["status"] == "completed"
    again = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "insurance", "review",
                            "--claim", claim_id, "--decision", "deny",
                            "--db", server.db_url], capture_output=True, text=True, check=False)
    assert again.returncode == 2
    assert again.stderr.startswith("error: ") and again.stderr.count("\n") == 1


def test_a_cancel_task_voids_the_claim(server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    first = submit(server, claim(patient, coverage, "2026-09-01", ("1", "T1", "200")))
    later = submit(server, claim(patient, coverage, "2026-09-02", ("1", "T2", "400")))
    assert totals(later)["deductible"] == Decimal("300")
    make(server, {"resourceType": "Task", "status": "requested", "intent": "order",
                  "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                 "financialtaskcode", "code": "cancel"}]},
                  "focus": first["request"]})
    assert server.client.get(first["request"]["reference"]).json()["status"] == "cancelled"
    again = current_response(server, later["request"]["reference"])
    assert totals(again)["deductible"] == Decimal("400")


def test_what_cannot_be_processed_says_why(server: ServerProcess) -> None:
    not_a_claim = server.client.post("Claim/$submit", json={"resourceType": "Patient"})
    assert not_a_claim.status_code == 400
    issue = not_a_claim.json()["issue"][0]
    assert "Claim" in issue["diagnostics"] and issue["expression"]
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    broken = claim(patient, "Coverage/missing", "2026-10-01", ("1", "E1", "10"))
    result = submit(server, broken)
    assert result["outcome"] == "error"
    assert "coverage" in result["error"][0]["code"]["text"]
    lapsed = submit(server, claim(patient, coverage, "2027-01-05", ("1", "E2", "10")))
    assert lapsed["outcome"] == "complete" and totals(lapsed)["noncovered"] == Decimal("10")
    assert lapsed["item"][0]["adjudication"][0]["reason"]["coding"][0]["code"] == \
        "not-eligible"


@pytest.mark.parametrize("change", [
    {"item": [{"sequence": 1, "net": {"value": "lots"}}]},
    {"item": [{"sequence": 1, "productOrService": {"text": "x"},
               "net": {"value": 1e300, "currency": "USD"}}]},
    {"billablePeriod": {"start": "someday"}},
    {"diagnosis": [{"sequence": 1}], "item": [{"sequence": 1, "diagnosisSequence": [7],
                                               "productOrService": {"text": "x"},
                                               "net": {"value": 5}}]},
    {"patient": {"reference": "Group/1"}},
    {"insurance": "none"},
    {"item": [{"sequence": 1, "productOrService": {"coding": [{"code": "x"}]},
               "net": {"value": 1}}] * 1000},
])
def test_hostile_claims_get_an_answer_not_a_crash(server: ServerProcess,
                                                  change: dict[str, Any]) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    body = {**claim(patient, coverage, "2026-11-01", ("1", "H1", "10")), **change}
    response = server.client.post("Claim/$submit", json=body)
    assert response.status_code < 500, response.text
    answer = response.json()
    if response.status_code == 200:
        assert answer["resourceType"] == "ClaimResponse"
        if answer["outcome"] == "error":
            assert answer["error"][0]["code"]["text"]
        elif answer["outcome"] == "complete":
            reconciles(decimal_json(response))
    else:
        assert answer["resourceType"] == "OperationOutcome"
        assert answer["issue"][0]["diagnostics"] and answer["issue"][0].get("expression")


def test_a_claim_submitted_twice_by_id_is_refused(server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    body = {**claim(patient, coverage, "2026-11-02", ("1", "D1", "10")),
            "id": f"twice-{os.urandom(4).hex()}"}
    assert submit(server, body)["outcome"] == "complete"
    again = server.client.post("Claim/$submit", json=body)
    assert again.status_code == 409
    assert "already submitted" in again.json()["issue"][0]["diagnostics"]


def test_concurrent_claims_of_a_family_share_one_deductible(server: ServerProcess) -> None:
    subscriber = f"S-{os.urandom(4).hex()}"
    holder = make(server, {"resourceType": "Patient", "name": [{"family": "Holder"}]})
    members = [member(server, subscriber, holder) for _ in range(2)]
    bodies = [claim(patient, coverage, f"2026-12-{day:02d}", ("1", f"C{day}", "200"))
              for day in range(1, 9) for patient, coverage in members[day % 2:day % 2 + 1]]
    with ThreadPoolExecutor(8) as pool:
        submitted = list(pool.map(lambda body: submit(server, body), bodies))
    # a claim that arrived before an earlier-dated one was settled again: read them now
    results = [current_response(server, r["request"]["reference"]) for r in submitted]
    assert sum(totals(r)["deductible"] for r in results) == Decimal("1000")
    assert sum(totals(r)["coinsurance"] for r in results) == Decimal("120")


def test_a_reviewer_denies_a_pended_claim_by_completing_its_task(
        server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    pended = submit(server, claim(patient, coverage, "2026-08-03", ("1", "R2", "100"),
                                  diagnosis="38341003"))
    claim_ref = pended["request"]["reference"]
    task = server.client.get("Task", params={"focus": claim_ref}).json()["entry"][0]["resource"]
    unsure = server.client.put(f"Task/{task['id']}", json={**task, "status": "completed"})
    assert unsure.status_code == 422 and "businessStatus" in unsure.text
    decided = server.client.put(f"Task/{task['id']}", json={
        **task, "status": "completed", "businessStatus": {"coding": [{
            "system": "urn:hygeia:CodeSystem:review-decision", "code": "deny"}]}})
    assert decided.status_code == 200, decided.text
    settled = current_response(server, claim_ref)
    assert settled["outcome"] == "complete" and totals(settled)["noncovered"] == Decimal("100")
    assert settled["item"][0]["adjudication"][0]["reason"]["coding"][0]["code"] == \
        "review-denied"


def test_a_claim_is_adjudicated_under_the_plan_version_of_its_service_date(
        server: ServerProcess) -> None:
    from hygeia.insurance.plan import demo_resources
    plan = next(r for r in demo_resources() if r["resourceType"] == "InsurancePlan")
    deductible = plan["plan"][0]["specificCost"][0]["benefit"][0]
    deductible["cost"][0]["value"]["value"] = 700.0
    created = server.client.put("InsurancePlan/demo-ppo-2028", json={
        **plan, "id": "demo-ppo-2028", "period": {"start": "2028-01-01"}})
    assert created.status_code in (200, 201), created.text
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    stored = server.client.get(coverage).json()
    server.client.put(coverage, json={**stored, "period": {"start": "2026-01-01"}})
    old = submit(server, claim(patient, coverage, "2026-12-30", ("1", "P1", "1000")))
    new = submit(server, claim(patient, coverage, "2028-01-03", ("1", "P2", "1000")))
    assert (totals(old)["deductible"], totals(new)["deductible"]) == (Decimal("500"),
                                                                      Decimal("700"))
    assert totals(new)["coinsurance"] == Decimal("60")


def test_eligibility_outside_the_period_is_not_in_force(server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    request = {"resourceType": "CoverageEligibilityRequest", "status": "active",
               "purpose": ["benefits"], "patient": {"reference": patient},
               "created": "2025-06-01", "servicedDate": "2025-06-01",
               "insurer": {"reference": "Organization/demo-payer"},
               "insurance": [{"coverage": {"reference": coverage}}]}
    lapsed = server.client.post("CoverageEligibilityRequest/$submit", json=request)
    assert lapsed.status_code == 200, lapsed.text
    assert lapsed.json()["insurance"][0]["inforce"] is False
    missing = server.client.post("CoverageEligibilityRequest/$submit", json={
        **request, "insurance": [{"coverage": {"reference": "Coverage/nope"}}]})
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["expression"]


def test_coding_edits_deny_the_second_of_an_exclusive_pair_and_extra_units(
        server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    body = claim(patient, coverage, "2026-11-20", ("1", "X9", "40"),
                 ("1", "http://www.ama-assn.org/go/cpt|99213", "100"),
                 ("1", "http://www.ama-assn.org/go/cpt|99214", "100"))
    body["item"][0]["quantity"] = {"value": 1}
    result = submit(server, body)
    reasons = [[a["reason"]["coding"][0]["code"] for a in item["adjudication"] if "reason" in a]
               for item in result["item"]]
    assert reasons[2] == ["exclusive-codes"] and "exclusive-codes" not in reasons[1]
    assert amounts(result["item"][2]["adjudication"])["noncovered"] == Decimal("100")
    body = claim(patient, coverage, "2026-11-21",
                 ("1", "http://www.ama-assn.org/go/cpt|99213", "100"))
    body["item"][0]["quantity"] = {"value": 2}
    doubled = submit(server, body)
    assert doubled["item"][0]["adjudication"][0]["reason"]["coding"][0]["code"] == \
        "units-per-day"


def test_a_batch_of_claims_is_adjudicated_in_service_date_order(server: ServerProcess) -> None:
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    bodies = [claim(patient, coverage, "2026-05-20", ("1", "B1", "400")),
              {**claim(patient, coverage, "2026-05-21", ("1", "B2", "5")), "status": 7},
              claim(patient, coverage, "2026-05-10", ("1", "B3", "300"))]
    response = server.client.post("Claim/$submit", json={
        "resourceType": "Bundle", "type": "batch",
        "entry": [{"resource": body} for body in bodies]})
    assert response.status_code == 200, response.text
    entries = decimal_json(response)["entry"]
    statuses = [e["response"]["status"] for e in entries]
    assert statuses[0] == statuses[2] == "200" and statuses[1] in ("400", "422")
    assert entries[1]["resource"]["resourceType"] == "OperationOutcome"
    first, later = entries[2]["resource"], entries[0]["resource"]
    reconciles(first)
    reconciles(later)
    # the 10 May claim went first: 300 deductible, then 200 more and 20% of 200
    assert totals(first)["deductible"] == Decimal("300")
    assert (totals(later)["deductible"], totals(later)["coinsurance"]) == (Decimal("200"),
                                                                           Decimal("40"))
    too_many = server.client.post("Claim/$submit", json={
        "resourceType": "Bundle", "type": "batch",
        "entry": [{"resource": bodies[0]}] * 1001})
    assert too_many.status_code == 400 and "at most 1000" in too_many.text


def test_record_checks_read_only_what_each_claim_names_single_and_batched(
        server: ServerProcess) -> None:
    """Necessity reads the conditions of the diagnoses a claim names (a Condition search
    by code, reserved characters escaped; a batch reads the union for each patient) and
    its encounters' heads: a documented diagnosis among many others pays, an undocumented
    one and a deleted encounter pend, the same single and in a batch."""
    patient, coverage = member(server, f"S-{os.urandom(4).hex()}")
    active = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                          "condition-clinical", "code": "active"}]}
    for code in ["D1", "A,1|x", *[f"OTHER{n}" for n in range(12)]]:
        make(server, {"resourceType": "Condition", "clinicalStatus": active,
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
                      "subject": {"reference": patient}, "onsetDateTime": "2025-01-01"})
    seen = make(server, {"resourceType": "Encounter", "status": "finished",
                         "class": {"code": "AMB"}, "subject": {"reference": patient}})
    gone = make(server, {"resourceType": "Encounter", "status": "finished",
                         "class": {"code": "AMB"}, "subject": {"reference": patient}})
    assert server.client.delete(gone).status_code in (200, 204)

    def bodies(round: str) -> list[dict[str, Any]]:
        made = []
        for day, diagnosis, encounter in (("05", "D1", seen), ("06", "A,1|x", seen),
                                          ("07", "NOT-DOCUMENTED", seen), ("08", "D1", gone)):
            body = claim(patient, coverage, f"2026-0{round}-{day}",
                         ("1", f"R{round}{day}", "100"), diagnosis=diagnosis)
            body["item"][0]["encounter"] = [{"reference": encounter}]
            made.append(body)
        return made

    single = [submit(server, body) for body in bodies("5")]
    response = server.client.post("Claim/$submit", json={
        "resourceType": "Bundle", "type": "batch",
        "entry": [{"resource": body} for body in bodies("6")]})
    assert response.status_code == 200, response.text
    batched = [entry["resource"] for entry in decimal_json(response)["entry"]]
    for results in (single, batched):
        assert [r["outcome"] for r in results] == ["complete", "complete", "queued", "queued"]
        assert "NOT-DOCUMENTED" in results[2]["disposition"]
        assert gone in results[3]["disposition"] and "D1" not in results[3]["disposition"]
