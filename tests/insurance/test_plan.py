"""The demo plan's rules are read back from its FHIR resources, on both backends."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hygeia.fhir.outcome import Unprocessable
from hygeia.insurance.plan import demo_resources, find_plan, rules_of
from hygeia.insurance.records import search_all
from hygeia.server import FhirService
from hygeia.server.rest import write
from hygeia.store import Repository


def test_the_demo_plan_reads_back_as_the_contract_states(repository: Repository) -> None:
    service = FhirService(repository)
    with service.transaction() as session:
        for resource in demo_resources():
            write.update(session, resource["resourceType"], resource["id"], resource)
    with service.reader() as session:
        plan = find_plan(session, "DEMO-PPO", "2026-05-01")
        assert plan is not None and plan["id"] == "demo-ppo"
        rules = rules_of(session, plan, "2026-05-01")
        assert find_plan(session, "DEMO-PPO", "1999-12-31") is None
        assert find_plan(session, "OTHER", "2026-05-01") is None
    assert (rules.deductible, rules.family_deductible) == (Decimal(500), Decimal(1000))
    assert (rules.oop_max, rules.family_oop_max) == (Decimal(2000), Decimal(4000))
    assert rules.coinsurance == Decimal("0.2")
    assert rules.copays == {"3": Decimal(25)}
    assert rules.prior_auth == frozenset({"62"})
    assert rules.fees[("http://www.ama-assn.org/go/cpt", "99213")] == Decimal(120)
    assert rules.payer == "Organization/demo-payer"


def test_search_all_reads_every_page_and_refuses_more_than_its_limit(
        repository: Repository) -> None:
    service = FhirService(repository)
    with service.transaction() as session:
        for number in range(7):
            write.create(session, "Coverage", {
                "resourceType": "Coverage", "status": "active", "subscriberId": f"P-{number}",
                "beneficiary": {"reference": "Patient/p"},
                "payor": [{"reference": "Organization/demo-payer"}]})
    with service.reader() as session:
        found = search_all(session, "Coverage", [("beneficiary", "Patient/p")], page=3)
        assert sorted(c["subscriberId"] for c in found) == [f"P-{n}" for n in range(7)]
        with pytest.raises(Unprocessable) as refused:
            search_all(session, "Coverage", [("beneficiary", "Patient/p")], page=3, most=5)
        assert "More than 5 Coverage" in str(refused.value.outcome())
