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
