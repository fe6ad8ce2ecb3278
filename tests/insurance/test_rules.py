"""Plan rules as data, over real HTTP on SQLite and PostgreSQL, hand-computed: waiting
periods, networks, visit and unit limits (with their balances in eligibility), and the
coding-edit table's age and sex conflicts.

The plan RULES-* is posted by the test: deductible 100 (family 200), then 10%
coinsurance in network and 50% out of network; MRI (category 62) after a 90-day
waiting period; consultations (3) limited to 2 visits a year and lab work (5) to 3
units; one network, which one clinic belongs to through an OrganizationAffiliation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.insurance.test_adjudication import claim, decimal_json, make, server, submit, totals

__all__ = ["server"]

BT = "http://terminology.hl7.org/CodeSystem/benefit-type"
HBT = "urn:hygeia:CodeSystem:benefit-type"
BC = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
APPLICABILITY = "http://terminology.hl7.org/CodeSystem/applicability"


def cost(kind: str, value: float, *, system: str = HBT, text: str = "individual",
         network: str = "in-network", unit: str = "USD") -> dict[str, Any]:
    return {"type": {"coding": [{"system": system, "code": kind}]}, "cost": [{
        "type": {"coding": [{"system": system, "code": kind}]},
        "applicability": {"coding": [{"system": APPLICABILITY, "code": network}],
                          "text": text},
        "value": {"value": value, "unit": unit}}]}


@pytest.fixture(scope="module")
def rules_plan(server: ServerProcess) -> Iterator[dict[str, str]]:
    """The plan, its network and two clinics: one in the network, one out of it."""
    value = f"RULES-{os.urandom(3).hex()}"
    network = make(server, {"resourceType": "Organization", "name": "Rules network"})
    inside = make(server, {"resourceType": "Organization", "name": "In-network clinic"})
    outside = make(server, {"resourceType": "Organization", "name": "Other clinic"})
    make(server, {"resourceType": "OrganizationAffiliation", "active": True,
                  "participatingOrganization": {"reference": inside},
                  "network": [{"reference": network}]})
    category = {"coding": [{"system": BC, "code": "1"}]}
    make(server, {
        "resourceType": "InsurancePlan", "status": "active", "name": value,
        "identifier": [{"system": "urn:hygeia:plan", "value": value}],
        "ownedBy": {"reference": "Organization/demo-payer"},
        "network": [{"reference": network}],
        "coverage": [
            {"type": {"coding": [{"system": BC, "code": "3"}]}, "benefit": [{
                "type": {"text": "consultation visits"},
                "limit": [{"value": {"value": 2, "unit": "visit"}}]}]},
            {"type": {"coding": [{"system": BC, "code": "5"}]}, "benefit": [{
                "type": {"text": "lab units"},
                "limit": [{"value": {"value": 3, "unit": "unit"}}]}]}],
        "plan": [{"specificCost": [
            {"category": category, "benefit": [
                cost("deductible", 100, system=BT), cost("deductible", 200, system=BT,
                                                         text="family"),
                cost("out-of-pocket-maximum", 1000),
                cost("out-of-pocket-maximum", 2000, text="family"),
                cost("coinsurance", 10, unit="%"),
                cost("coinsurance", 50, unit="%", network="out-of-network")]},
            {"category": {"coding": [{"system": BC, "code": "62"}]}, "benefit": [
                cost("waiting-period", 90, unit="d")]},
            {"category": {"coding": [{"system": BC, "code": "F3"}]}, "benefit": [  # glasses
                cost("minimum-age", 0, unit="a"), cost("maximum-age", 18, unit="a")]},
            {"category": {"coding": [{"system": BC, "code": "69"}]}, "benefit": [{  # maternity
                "type": {"coding": [{"system": HBT, "code": "sex"}]}, "cost": [{
                    "type": {"coding": [{"system": HBT, "code": "sex"}]},
                    "qualifiers": [{"coding": [{
                        "system": "http://hl7.org/fhir/administrative-gender",
                        "code": "female"}]}]}]}]}]}]})
    yield {"plan": value, "inside": inside, "outside": outside}


def enrol(server: ServerProcess, plan: str, **patient: Any) -> tuple[str, str]:
    person = make(server, {"resourceType": "Patient", **patient})
    coverage = make(server, {
        "resourceType": "Coverage", "status": "active",
        "subscriberId": f"R-{os.urandom(4).hex()}", "beneficiary": {"reference": person},
        "payor": [{"reference": "Organization/demo-payer"}],
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                        "coverage-class", "code": "plan"}]}, "value": plan}]})
    return person, coverage


def at(provider: str, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "provider": {"reference": provider}}


def reason(response: dict[str, Any], line: int = 0) -> str:
    return str(response["item"][line]["adjudication"][0]["reason"]["coding"][0]["code"])


def test_a_waiting_period_then_the_network_decides_the_coinsurance(
        server: ServerProcess, rules_plan: dict[str, str]) -> None:
    patient, coverage = enrol(server, rules_plan["plan"])
    inside, outside = rules_plan["inside"], rules_plan["outside"]
    early = submit(server, at(inside, claim(patient, coverage, "2026-03-31",
                                            ("62", "MRI-1", "500"))))
    assert reason(early) == "waiting-period"
    assert (totals(early)["noncovered"], totals(early)["benefit"]) == (Decimal(500), 0)
    # 90 days after 2026-01-01: deductible 100, 10% of 400 = 40
    later = submit(server, at(inside, claim(patient, coverage, "2026-04-01",
                                            ("62", "MRI-2", "500"))))
    assert (totals(later)["deductible"], totals(later)["coinsurance"],
            totals(later)["benefit"]) == (Decimal(100), Decimal(40), Decimal(360))
    away = submit(server, at(outside, claim(patient, coverage, "2026-04-02",
                                            ("1", "X1", "200"))))
    assert (totals(away)["coinsurance"], totals(away)["benefit"]) == (Decimal(100),
                                                                      Decimal(100))
    assert reason(away) == "out-of-network"


def eligibility(server: ServerProcess, patient: str, coverage: str) -> dict[str, Any]:
    response = server.client.post("CoverageEligibilityRequest/$submit", json={
        "resourceType": "CoverageEligibilityRequest", "status": "active",
        "purpose": ["benefits"], "patient": {"reference": patient},
        "created": "2026-12-01", "servicedDate": "2026-12-01",
        "insurer": {"reference": "Organization/demo-payer"},
        "insurance": [{"coverage": {"reference": coverage}}]})
    assert response.status_code == 200, response.text
    return decimal_json(response)


def limits(answer: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {item["category"]["coding"][0]["code"]: (item["benefit"][0]["allowedUnsignedInt"],
                                                    item["benefit"][0]["usedUnsignedInt"])
            for item in answer["insurance"][0]["item"]
            if "allowedUnsignedInt" in item["benefit"][0]}


def test_visit_and_unit_limits_deny_past_the_limit_and_show_in_eligibility(
        server: ServerProcess, rules_plan: dict[str, str]) -> None:
    patient, coverage = enrol(server, rules_plan["plan"])
    inside = rules_plan["inside"]
    assert limits(eligibility(server, patient, coverage)) == {"3": (2, 0), "5": (3, 0)}
    for day in ("2026-05-01", "2026-05-02"):
        visit = submit(server, at(inside, claim(patient, coverage, day, ("3", "V1", "80"))))
        assert totals(visit)["eligible"] == Decimal(80)
    third = submit(server, at(inside, claim(patient, coverage, "2026-05-03",
                                            ("3", "V1", "80"))))
    assert reason(third) == "benefit-limit" and totals(third)["noncovered"] == Decimal(80)
    lab = claim(patient, coverage, "2026-05-04", ("5", "L1", "30"))
    lab["item"][0]["quantity"] = {"value": 2}
    assert totals(submit(server, at(inside, lab)))["eligible"] == Decimal(30)
    more = claim(patient, coverage, "2026-05-05", ("5", "L2", "30"))
    more["item"][0]["quantity"] = {"value": 2}  # 2 + 2 > 3
    assert reason(submit(server, at(inside, more))) == "benefit-limit"
    assert limits(eligibility(server, patient, coverage)) == {"3": (2, 2), "5": (3, 2)}


def test_the_plan_restricts_categories_by_age_and_sex(
        server: ServerProcess, rules_plan: dict[str, str]) -> None:
    inside = rules_plan["inside"]
    adult, adult_cov = enrol(server, rules_plan["plan"], birthDate="1980-06-01",
                             gender="male")
    child, child_cov = enrol(server, rules_plan["plan"], birthDate="2010-06-01",
                             gender="female")
    glasses, maternity = ("F3", "G1", "150"), ("69", "M1", "150")
    assert reason(submit(server, at(inside, claim(adult, adult_cov, "2026-06-01",
                                                  glasses)))) == "age-restriction"
    assert reason(submit(server, at(inside, claim(adult, adult_cov, "2026-06-02",
                                                  maternity)))) == "sex-restriction"
    # the child (16, female): both covered; deductible 100, 10% of 50 = 5
    fine = submit(server, at(inside, claim(child, child_cov, "2026-06-01", glasses)))
    assert (totals(fine)["deductible"], totals(fine)["coinsurance"]) == (Decimal(100),
                                                                        Decimal(5))
    covered = submit(server, at(inside, claim(child, child_cov, "2026-06-02", maternity)))
    assert totals(covered)["eligible"] == Decimal(150)


SNOMED = "http://snomed.info/sct"


def test_the_coding_table_denies_age_and_sex_conflicts(server: ServerProcess) -> None:
    adult, adult_cov = enrol(server, "DEMO-PPO", birthDate="1980-06-01", gender="male")
    child, child_cov = enrol(server, "DEMO-PPO", birthDate="2019-06-01", gender="female")
    well_child = ("1", f"{SNOMED}|410620009", "100")
    prenatal = ("1", f"{SNOMED}|424619006", "100")
    assert reason(submit(server, claim(adult, adult_cov, "2026-06-01", well_child))) == \
        "age-conflict"
    assert reason(submit(server, claim(adult, adult_cov, "2026-06-02", prenatal))) == \
        "sex-conflict"
    fine = submit(server, claim(child, child_cov, "2026-06-01", well_child))
    assert totals(fine)["eligible"] == Decimal(100)
    assert "reason" not in fine["item"][0]["adjudication"][0] or \
        reason(fine) == "deductible"
