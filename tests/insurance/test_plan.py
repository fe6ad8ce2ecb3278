"""The demo plan's rules are read back from its FHIR resources, on both backends."""

from __future__ import annotations

from decimal import Decimal

from hygeia.insurance.plan import demo_resources, find_plan, rules_of
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
