"""Coordination of benefits over real HTTP on SQLite and PostgreSQL, hand-computed.

A patient has the demo plan twice: Coverage A (order 1, primary) and Coverage B
(order 2, secondary), each its own family. The secondary prices and cost-shares each
line as if it were the only plan (its own deductible and ledger) and pays the lesser
of that and what the member owes after the primary.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from tests.conftest import ServerProcess
from tests.insurance.test_adjudication import (
    amounts,
    claim,
    decimal_json,
    make,
    member,
    server,
    submit,
    totals,
)

__all__ = ["server"]  # the module's fixture: a server with the demo plan, both backends

CPT = "http://www.ama-assn.org/go/cpt|99213"


def secondary(server: ServerProcess, patient: str, **extra: Any) -> str:
    return make(server, {
        "resourceType": "Coverage", "status": "active", "order": 2,
        "subscriberId": f"S2-{os.urandom(4).hex()}", "beneficiary": {"reference": patient},
        "payor": [{"reference": "Organization/demo-payer"}],
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                        "coverage-class", "code": "plan"}]},
                   "value": "DEMO-PPO"}], **extra})


def eob_of(server: ServerProcess, response: dict[str, Any]) -> dict[str, Any]:
    found = server.client.get("ExplanationOfBenefit", params={
        "claim": response["request"]["reference"]})
    entries = decimal_json(found)["entry"]
    assert len(entries) == 1
    eob: dict[str, Any] = entries[0]["resource"]
    for part in [*[i["adjudication"] for i in eob["item"]], eob["total"]]:
        got = amounts(part)
        assert got["submitted"] == got["eligible"] + got["noncovered"]
        assert got["eligible"] == got["benefit"] + got["memberliability"]
    return eob


def secondary_response(server: ServerProcess, response: dict[str, Any]) -> dict[str, Any]:
    found = decimal_json(server.client.get("ClaimResponse", params={
        "request": response["request"]["reference"], "status": "active"}))["entry"]
    views = [e["resource"] for e in found if any(
        x["url"] == "urn:hygeia:insurance:cob-role" for x in e["resource"].get("extension", []))]
    assert len(views) == 1
    return views[0]


def test_the_secondary_pays_what_the_member_owes_up_to_its_own_benefit(
        server: ServerProcess) -> None:
    patient, primary = member(server, f"S-{os.urandom(4).hex()}")
    other = secondary(server, patient)
    first = submit(server, claim(patient, primary, "2026-02-01", ("1", "X1", "1000")))
    # primary: deductible 500, 20% of the other 500 = 100; the plan pays 400
    assert (totals(first)["deductible"], totals(first)["coinsurance"],
            totals(first)["benefit"], totals(first)["memberliability"]) == \
        (Decimal(500), Decimal(100), Decimal(400), Decimal(600))
    view = secondary_response(server, first)
    # secondary alone would pay 400 too (its own deductible): it pays min(400, 600)
    assert view["insurance"][0]["coverage"]["reference"] == other
    assert (amounts(view["total"])["deductible"], amounts(view["total"])["benefit"]) == \
        (Decimal(500), Decimal(400))
    eob = eob_of(server, first)
    assert (amounts(eob["total"])["secondary"], amounts(eob["total"])["benefit"],
            amounts(eob["total"])["memberliability"]) == (Decimal(400), Decimal(800),
                                                          Decimal(200))
    assert [i["coverage"]["reference"] for i in eob["insurance"]] == [primary, other]
    assert "secondary coverage paid 400.00 USD" in eob["processNote"][0]["text"]
    # both deductibles met: primary leaves 40 of 200, the secondary would pay 160: pays 40
    second = submit(server, claim(patient, primary, "2026-02-02", ("1", "X2", "200")))
    assert totals(second)["memberliability"] == Decimal(40)
    eob = eob_of(server, second)
    assert (amounts(eob["total"])["secondary"], amounts(eob["total"])["memberliability"],
            amounts(eob["total"])["benefit"]) == (Decimal(40), Decimal(0), Decimal(200))
    # a consultation: primary copay 25 of the 120 allowed; the secondary pays the copay
    visit = submit(server, claim(patient, primary, "2026-02-03", ("3", CPT, "150")))
    assert totals(visit)["copay"] == Decimal(25)
    eob = eob_of(server, visit)
    assert (amounts(eob["total"])["secondary"], amounts(eob["total"])["memberliability"],
            amounts(eob["total"])["noncovered"]) == (Decimal(25), Decimal(0), Decimal(30))


def test_no_secondary_outside_its_period_and_a_void_cancels_its_view(
        server: ServerProcess) -> None:
    patient, primary = member(server, f"S-{os.urandom(4).hex()}")
    secondary(server, patient, period={"start": "2026-06-01", "end": "2026-12-31"})
    before = submit(server, claim(patient, primary, "2026-03-01", ("1", "X1", "300")))
    eob = eob_of(server, before)
    assert "secondary" not in amounts(eob["total"]) and len(eob["insurance"]) == 1
    assert amounts(eob["total"])["memberliability"] == Decimal(300)
    during = submit(server, claim(patient, primary, "2026-07-01", ("1", "X2", "100")))
    # primary: 100 more deductible; the secondary (its deductible not met) pays nothing
    eob = eob_of(server, during)
    assert (amounts(eob["total"])["secondary"], amounts(eob["total"])["memberliability"]) == \
        (Decimal(0), Decimal(100))
    claim_ref = during["request"]["reference"]
    stored = server.client.get(claim_ref).json()
    assert server.client.put(claim_ref, json={**stored, "status": "cancelled"}
                             ).status_code == 200
    left = decimal_json(server.client.get("ClaimResponse", params={
        "request": claim_ref, "status": "active"})).get("entry") or []
    assert left == []


def balances(server: ServerProcess, patient: str, coverage: str) -> dict[tuple[str, str],
                                                                       Decimal]:
    """The eligibility balances used so far: (unit, benefit type) -> money."""
    answer = server.client.post("CoverageEligibilityRequest/$submit", json={
        "resourceType": "CoverageEligibilityRequest", "status": "active",
        "purpose": ["benefits"], "patient": {"reference": patient}, "created": "2026-12-01",
        "servicedDate": "2026-12-01", "insurer": {"reference": "Organization/demo-payer"},
        "insurance": [{"coverage": {"reference": coverage}}]})
    assert answer.status_code == 200, answer.text
    return {(i["unit"]["coding"][0]["code"], b["type"]["coding"][0]["code"]):
            Decimal(b["usedMoney"]["value"])
            for i in decimal_json(answer)["insurance"][0]["item"] for b in i["benefit"]
            if "usedMoney" in b}


def current(server: ServerProcess, response: dict[str, Any]) -> dict[str, Any]:
    """The claim's primary ClaimResponse as it stands now."""
    inquiry = server.client.post("Claim/$inquire", json={
        "resourceType": "Parameters", "parameter": [
            {"name": "claim", "valueReference": response["request"]}]})
    assert inquiry.status_code == 200, inquiry.text
    return decimal_json(inquiry)


def test_a_void_readjudicates_the_secondary_family_too(server: ServerProcess) -> None:
    """P has primary A (family SA) and secondary B (family SB); Q and R are on SB as
    primary. Voiding P's first claim must leave both families as if it never existed."""
    family = f"SB-{os.urandom(4).hex()}"
    patient, primary = member(server, f"SA-{os.urandom(4).hex()}")
    other = secondary(server, patient, subscriberId=family)
    q, q_cov = member(server, family)
    r, r_cov = member(server, family)
    first = submit(server, claim(patient, primary, "2026-02-01", ("1", "W1", "1000")))
    # A: deductible 500, 20% of 500; B alone: the same, so it pays 400 of the 600 owed
    assert amounts(secondary_response(server, first)["total"])["deductible"] == Decimal(500)
    q_claim = submit(server, claim(q, q_cov, "2026-02-02", ("1", "W2", "500")))
    assert totals(q_claim)["deductible"] == Decimal(500)  # SB family deductible now 1,000
    r_claim = submit(server, claim(r, r_cov, "2026-02-03", ("1", "W3", "300")))
    assert (totals(r_claim)["deductible"], totals(r_claim)["coinsurance"]) == \
        (Decimal(0), Decimal(60))
    last = submit(server, claim(patient, primary, "2026-02-04", ("1", "W4", "200")))
    # A: 20% of 200 = 40 owed; B (P's deductible met there) pays all of it
    assert amounts(eob_of(server, last)["total"])["secondary"] == Decimal(40)

    make(server, {"resourceType": "Task", "status": "requested", "intent": "order",
                  "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                 "financialtaskcode", "code": "cancel"}]},
                  "focus": first["request"]})

    # As if the first claim never existed. SB family: Q 500 deductible (unchanged);
    # R: family room 1,000 - 500 = 500, so all 300 is deductible, nothing paid.
    assert totals(current(server, q_claim))["deductible"] == Decimal(500)
    r_now = current(server, r_claim)
    assert (totals(r_now)["deductible"], totals(r_now)["coinsurance"],
            totals(r_now)["benefit"]) == (Decimal(300), Decimal(0), Decimal(0))
    # P's last claim: A applies 200 of deductible; B alone (family room 1,000 - 800
    # = 200) applies 200 of deductible too, so it pays nothing and P owes 200
    last_now = current(server, last)
    assert (totals(last_now)["deductible"], totals(last_now)["benefit"]) == \
        (Decimal(200), Decimal(0))
    view = secondary_response(server, last)
    assert (amounts(view["total"])["deductible"], amounts(view["total"])["coinsurance"],
            amounts(view["total"])["benefit"]) == (Decimal(200), Decimal(0), Decimal(0))
    eob = eob_of(server, last)
    assert (amounts(eob["total"])["secondary"], amounts(eob["total"])["memberliability"]) == \
        (Decimal(0), Decimal(200))
    assert balances(server, patient, primary) == {
        ("individual", "deductible"): Decimal(200),
        ("individual", "out-of-pocket-maximum"): Decimal(200),
        ("family", "deductible"): Decimal(200),
        ("family", "out-of-pocket-maximum"): Decimal(200)}
    assert balances(server, patient, other) == {
        ("individual", "deductible"): Decimal(200),
        ("individual", "out-of-pocket-maximum"): Decimal(200),
        ("family", "deductible"): Decimal(1000),
        ("family", "out-of-pocket-maximum"): Decimal(1000)}
    assert balances(server, r, r_cov)[("individual", "deductible")] == Decimal(300)


def test_a_late_claim_readjudicates_the_secondary_family_too(server: ServerProcess) -> None:
    """A claim of an earlier service date, sent late, files its secondary's cost shares in
    the secondary's family before claims already adjudicated there: they are settled again."""
    family = f"SB-{os.urandom(4).hex()}"
    patient, primary = member(server, f"SA-{os.urandom(4).hex()}")
    secondary(server, patient, subscriberId=family)
    q, q_cov = member(server, family)
    r, r_cov = member(server, family)
    submit(server, claim(q, q_cov, "2026-03-02", ("1", "L2", "500")))
    r_claim = submit(server, claim(r, r_cov, "2026-03-03", ("1", "L3", "300")))
    # family room 1,000 - 500: all 300 is R's deductible
    assert (totals(r_claim)["deductible"], totals(r_claim)["benefit"]) == (Decimal(300), 0)
    late = submit(server, claim(patient, primary, "2026-03-01", ("1", "L1", "1000")))
    assert amounts(secondary_response(server, late)["total"])["deductible"] == Decimal(500)
    # P's 500 on the secondary comes first now: Q's 500 meets the family's 1,000, so R
    # pays no deductible, 20% of 300 = 60, and the plan pays 240
    r_now = current(server, r_claim)
    assert (totals(r_now)["deductible"], totals(r_now)["coinsurance"],
            totals(r_now)["benefit"]) == (Decimal(0), Decimal(60), Decimal(240))
