"""The demo plan's rules are read back from its FHIR resources, on both backends."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hygeia.fhir.outcome import Unprocessable
from hygeia.insurance.plan import (
    SHARED,
    demo_resources,
    fee_definitions,
    find_plan,
    plan_versions,
    rules_of,
    rules_on,
)
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


def test_rules_are_computed_once_per_plan_version_and_fee_schedules_in_force(
        repository: Repository) -> None:
    """Rules follow the fee schedule in force on each day (an office visit at 120 through
    2026, 130 from 2027), and days with the same plan version and schedules in force
    share one computation, in a batch's memo and in the serving process's cache."""
    service = FhirService(repository)
    resources = demo_resources()
    visit = next(r for r in resources if r.get("id") == "demo-fee-99213")
    later = {**visit, "id": "demo-fee-99213-2027", "url": visit["url"] + ":2027",
             "effectivePeriod": {"start": "2027-01-01"},
             "propertyGroup": [{"priceComponent": [{"type": "base", "amount": {
                 "value": 130.0, "currency": "USD"}}]}]}
    visit["effectivePeriod"] = {"end": "2026-12-31"}
    with service.transaction() as session:
        for resource in [*resources, later]:
            write.update(session, resource["resourceType"], resource["id"], resource)
    office = ("http://www.ama-assn.org/go/cpt", "99213")
    SHARED.clear()
    with service.reader() as session:
        versions, fees = plan_versions(session, "DEMO-PPO"), fee_definitions(session)
        computed: dict[Any, Any] = {}
        may, june, next_year = (rules_on(session, "DEMO-PPO", day, versions, fees, computed)
                                for day in ("2026-05-01", "2026-06-01", "2027-02-01"))
        assert may is not None and june is not None and next_year is not None
        assert (may.fees[office], next_year.fees[office]) == (Decimal(120), Decimal(130))
        assert june is may and len(computed) == 2
        assert rules_on(session, "DEMO-PPO", "1999-12-31", versions, fees, computed) is None
        shared = [SHARED.get(session, "DEMO-PPO", day) for day in ("2026-12-31", "2027-01-01")]
    assert [rules.fees[office] for rules in shared if rules] == [Decimal(120), Decimal(130)]
    SHARED.clear()
