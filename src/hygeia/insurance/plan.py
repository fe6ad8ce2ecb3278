"""Plans as FHIR data: the demo payer, its InsurancePlan and fee schedule, and the rules read back.

The cost shares live in ``InsurancePlan.plan.specificCost`` (benefit types
``deductible``, ``out-of-pocket-maximum``, ``coinsurance``, ``copay``, each cost
``applicability`` individual or family) and prior authorization as a cost
qualifier ``prior-authorization`` on a category. The fee schedule is a
ChargeItemDefinition per code (``code`` + base price component). The adjudicator
reads only these resources, so another plan is new data, not new code.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hygeia.insurance.codes import (
    BENEFIT_CATEGORY,
    BENEFIT_TYPE,
    HYGEIA_BENEFIT_TYPE,
    PAYER_SYSTEM,
    PLAN_SYSTEM,
    amount,
)
from hygeia.insurance.records import codings, search
from hygeia.store import Session, StoredVersion

DEMO_PLAN = "DEMO-PPO"
PA_QUALIFIER = "prior-authorization"


@dataclass(frozen=True)
class PlanRules:
    """One plan's cost shares, read from its InsurancePlan and fee schedule."""

    plan_id: str
    payer: str  # Organization/id
    deductible: Decimal = Decimal(0)
    family_deductible: Decimal = Decimal(0)
    oop_max: Decimal = Decimal(0)
    family_oop_max: Decimal = Decimal(0)
    coinsurance: Decimal = Decimal(0)  # a fraction: 0.20
    copays: dict[str, Decimal] = field(default_factory=dict)  # benefit category -> copay
    prior_auth: frozenset[str] = frozenset()  # benefit categories that need one
    fees: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    waiting_days: dict[str, int] = field(default_factory=dict)  # category -> days from start
    limits: dict[str, tuple[Decimal, str]] = field(default_factory=dict)  # category ->
    # (most a member may use a year, "visit" (one a line) or "unit" (the line's quantity))
    networks: frozenset[str] = frozenset()  # Organization references; empty: no network
    oon_coinsurance: Decimal | None = None  # out of network (None: not covered there)
    ages: dict[str, tuple[int, int]] = field(default_factory=dict)  # category -> ages covered
    sexes: dict[str, str] = field(default_factory=dict)  # category -> the gender covered


def _cost(benefit_type: str, applicability: str, value: str, unit: str = "USD",
          system: str = BENEFIT_TYPE) -> dict[str, Any]:
    return {"type": {"coding": [{"system": system, "code": benefit_type}]},
            "cost": [{"type": {"coding": [{"system": system, "code": benefit_type}]},
                      "applicability": {"coding": [{
                          "system": "http://terminology.hl7.org/CodeSystem/applicability",
                          "code": "in-network"}], "text": applicability},
                      "value": {"value": float(value), "unit": unit}}]}


def demo_resources() -> list[dict[str, Any]]:
    """The demo payer, plan and fee schedule, with fixed ids so a rerun updates them."""
    medical = {"coding": [{"system": BENEFIT_CATEGORY, "code": "1"}]}
    payer = {"resourceType": "Organization", "id": "demo-payer", "active": True,
             "identifier": [{"system": PAYER_SYSTEM, "value": "DEMO"}],
             "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                   "organization-type", "code": "pay"}]}],
             "name": "Hygeia Demo Health Plan"}
    plan = {
        "resourceType": "InsurancePlan", "id": "demo-ppo", "status": "active",
        "identifier": [{"system": PLAN_SYSTEM, "value": DEMO_PLAN}],
        "name": "Demo PPO", "ownedBy": {"reference": "Organization/demo-payer"},
        "period": {"start": "2000-01-01"},
        "plan": [{"identifier": [{"system": PLAN_SYSTEM, "value": DEMO_PLAN}],
                  "specificCost": [
                      {"category": medical, "benefit": [
                          _cost("deductible", "individual", "500.00"),
                          _cost("deductible", "family", "1000.00"),
                          _cost("out-of-pocket-maximum", "individual", "2000.00",
                                system=HYGEIA_BENEFIT_TYPE),
                          _cost("out-of-pocket-maximum", "family", "4000.00",
                                system=HYGEIA_BENEFIT_TYPE),
                          _cost("coinsurance", "individual", "20", unit="%",
                                system=HYGEIA_BENEFIT_TYPE)]},
                      {"category": {"coding": [{"system": BENEFIT_CATEGORY, "code": "3"}]},
                       "benefit": [_cost("copay", "individual", "25.00")]},
                      {"category": {"coding": [{"system": BENEFIT_CATEGORY, "code": "62"}]},
                       "benefit": [{"type": {"text": "MRI"}, "cost": [{
                           "type": {"text": "prior authorization"},
                           "qualifiers": [{"text": PA_QUALIFIER}]}]}]}]}]}
    fees = [("http://snomed.info/sct", "185349003", "Encounter for check up", "150.00"),
            ("http://snomed.info/sct", "113091000", "Magnetic resonance imaging", "800.00"),
            ("http://www.ama-assn.org/go/cpt", "99213", "Office visit", "120.00")]
    schedule = [{"resourceType": "ChargeItemDefinition", "id": f"demo-fee-{code}",
                 "url": f"urn:hygeia:fee-schedule:{DEMO_PLAN}:{code}", "status": "active",
                 "title": title, "useContext": [{
                     "code": {"system": "http://terminology.hl7.org/CodeSystem/"
                              "usage-context-type", "code": "program"},
                     "valueCodeableConcept": {"text": DEMO_PLAN}}],
                 "code": {"coding": [{"system": system, "code": code}]},
                 "propertyGroup": [{"priceComponent": [{
                     "type": "base", "amount": {"value": float(price), "currency": "USD"}}]}]}
                for system, code, title, price in fees]
    return [payer, plan, *schedule]


def _applicable(cost: dict[str, Any]) -> str:
    """``individual`` or ``family`` (``applicability.text``), with ``@oon`` added when
    its ``applicability`` code is ``out-of-network``."""
    applicability = cost.get("applicability") or {}
    network = "@oon" if "out-of-network" in [c for _, c in codings(applicability)] else ""
    return str(applicability.get("text") or "individual") + network


def _limits(plan: dict[str, Any]) -> dict[str, tuple[Decimal, str]]:
    """``InsurancePlan.coverage``: per benefit category (``coverage.type``), a
    ``benefit.limit.value`` Quantity whose unit is ``visit`` or ``unit``, per year."""
    found: dict[str, tuple[Decimal, str]] = {}
    for coverage in plan.get("coverage") or []:
        category = next((c for _, c in codings(coverage.get("type"))), "")
        for benefit in coverage.get("benefit") or []:
            for limit in benefit.get("limit") or []:
                value = limit.get("value") or {}
                unit = "unit" if value.get("unit") in ("unit", "units") else "visit"
                if category and amount(value) > 0:
                    found[category] = (amount(value), unit)
    return found


def fee_definitions(session: Session) -> list[dict[str, Any]]:
    """The active ChargeItemDefinitions: every plan's fee schedule, every version."""
    return search(session, "ChargeItemDefinition", [("status", "active")])


def rules_of(session: Session, plan: dict[str, Any], day: str,
             definitions: list[dict[str, Any]] | None = None) -> PlanRules:
    """The rules of an InsurancePlan and its fee schedule (the ChargeItemDefinitions for
    the plan whose ``effectivePeriod`` holds ``day``; ``definitions``: every active one,
    when the caller has read them already)."""
    payer = str((plan.get("ownedBy") or {}).get("reference") or "")
    values: dict[tuple[str, str], Decimal] = {}
    copays: dict[str, Decimal] = {}
    prior: set[str] = set()
    waiting: dict[str, int] = {}
    ages: dict[str, tuple[int, int]] = {}
    sexes: dict[str, str] = {}
    for part in plan.get("plan") or []:
        for specific in part.get("specificCost") or []:
            category = next((c for s, c in codings(specific.get("category"))), "")
            for benefit in specific.get("benefit") or []:
                for cost in benefit.get("cost") or []:
                    if any(q.get("text") == PA_QUALIFIER for q in cost.get("qualifiers") or []):
                        prior.add(category)
                    kind = next((c for s, c in codings(cost.get("type"))), "")
                    value = amount(cost.get("value"))
                    if kind == "waiting-period":  # a Quantity in days
                        waiting[category] = int(value)
                    elif kind in ("minimum-age", "maximum-age"):  # Quantities in years
                        low, high = ages.get(category, (0, 200))
                        ages[category] = (int(value), high) if kind == "minimum-age" \
                            else (low, int(value))
                    elif kind == "sex":  # the gender a qualifier codes
                        sexes[category] = next((c for q in cost.get("qualifiers") or []
                                                for _, c in codings(q)), "")
                    elif kind == "copay":
                        copays[category] = value
                    elif kind:
                        values[(kind, _applicable(cost))] = value
    name = next((i.get("value") for i in plan.get("identifier") or []
                 if i.get("system") == PLAN_SYSTEM), "")
    fees: dict[tuple[str, str], Decimal] = {}
    for definition in fee_definitions(session) if definitions is None else definitions:
        context = [u.get("valueCodeableConcept", {}).get("text")
                   for u in definition.get("useContext") or []]
        if name not in context or not in_force(definition.get("effectivePeriod"), day):
            continue
        for group in definition.get("propertyGroup") or []:
            for component in group.get("priceComponent") or []:
                if component.get("type") == "base":
                    for coding in codings(definition.get("code")):
                        fees[coding] = amount(component.get("amount"))
    return PlanRules(
        plan_id=str(plan.get("id")), payer=payer,
        deductible=values.get(("deductible", "individual"), Decimal(0)),
        family_deductible=values.get(("deductible", "family"), Decimal(0)),
        oop_max=values.get(("out-of-pocket-maximum", "individual"), Decimal(0)),
        family_oop_max=values.get(("out-of-pocket-maximum", "family"), Decimal(0)),
        coinsurance=values.get(("coinsurance", "individual"), Decimal(0)) / 100,
        copays=copays, prior_auth=frozenset(prior), fees=fees, waiting_days=waiting,
        limits=_limits(plan), ages=ages, sexes=sexes,
        networks=frozenset(str(n.get("reference")) for n in [
            *(plan.get("network") or []),
            *(n for part in plan.get("plan") or [] for n in part.get("network") or [])]
            if isinstance(n, dict) and n.get("reference")),
        oon_coinsurance=None if ("coinsurance", "individual@oon") not in values
        else values[("coinsurance", "individual@oon")] / 100)


def rules_on(session: Session, plan_value: str, day: str, versions: list[dict[str, Any]],
             definitions: list[dict[str, Any]], computed: dict[tuple[Any, ...], PlanRules]
             ) -> PlanRules | None:
    """The rules of the plan ``urn:hygeia:plan|VALUE`` on ``day``, from its ``versions`` and
    every active fee ``definitions``; computed once per plan version and set of fee
    schedules in force (kept in ``computed``, which holds for these sources only).

    A day changes the rules only through which plan version and which
    ChargeItemDefinitions are in force: keyed by day, the rules were parsed again for
    nearly every claim of a corpus spread over years (1,115 times for 1,952 claims)."""
    plan = find_plan(session, plan_value, day, versions)
    if plan is None:
        return None
    key = (plan_value, plan.get("id"), (plan.get("meta") or {}).get("versionId"),
           str((plan.get("period") or {}).get("start") or ""),
           tuple(index for index, definition in enumerate(definitions)
                 if in_force(definition.get("effectivePeriod"), day)))
    found = computed.get(key)
    if found is None:
        found = computed[key] = rules_of(session, plan, day, definitions)
    return found


SHARED_SECONDS = 2.0  # a plan edit reaches another serving process's cache within this


class _Shared:
    """The plans' rules by (plan, day), shared by the requests of one serving process.

    What they are computed from (the plan's versions and the fee schedules) is read
    again at most every :data:`SHARED_SECONDS`, and the rules are kept while it is
    unchanged: claims of many service dates each need the rules of their day, which
    are computed in memory, not read (two searches a claim before).
    :class:`PlanEdits` empties it when an InsurancePlan or ChargeItemDefinition is
    written through this process; with ``--workers`` above 1 another process's copy
    lives at most :data:`SHARED_SECONDS`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # plan value -> (read again after, its versions, every fee schedule)
        self.sources: dict[str, tuple[float, list[dict[str, Any]], list[dict[str, Any]]]] = {}
        self.rules: dict[tuple[str, str], PlanRules | None] = {}
        self.computed: dict[tuple[Any, ...], PlanRules] = {}  # see rules_on

    def get(self, session: Session, plan_value: str, day: str) -> PlanRules | None:
        now = time.monotonic()
        with self.lock:
            known = self.sources.get(plan_value)
            if known is not None and known[0] > now and (plan_value, day) in self.rules:
                return self.rules[(plan_value, day)]
        if known is None or known[0] <= now:
            versions, fees = plan_versions(session, plan_value), fee_definitions(session)
            with self.lock:
                if known is None or (known[1], known[2]) != (versions, fees):
                    for key in [key for key in self.rules if key[0] == plan_value]:
                        del self.rules[key]
                    for key in [key for key in self.computed if key[0] == plan_value]:
                        del self.computed[key]
                self.sources[plan_value] = (now + SHARED_SECONDS, versions, fees)
        else:
            versions, fees = known[1], known[2]
        rules = rules_on(session, plan_value, day, versions, fees, self.computed)
        with self.lock:
            if len(self.rules) > 100_000:  # days x plans: bounded
                self.rules.clear()
                self.computed.clear()
            self.rules[(plan_value, day)] = rules
        return rules

    def clear(self) -> None:
        with self.lock:
            self.sources.clear()
            self.rules.clear()
            self.computed.clear()


SHARED = _Shared()


class PlanEdits:
    """The write hook that empties :data:`SHARED` when a plan or fee schedule changes."""

    types = frozenset({"InsurancePlan", "ChargeItemDefinition"})

    def written(self, session: Session, version: StoredVersion) -> None:
        SHARED.clear()


def in_force(period: Any, day: str) -> bool:
    """Whether a FHIR Period (absent: always) holds the date ``day`` (YYYY-MM-DD)."""
    if not isinstance(period, dict):
        return True
    start, end = str(period.get("start") or "")[:10], str(period.get("end") or "")[:10]
    return (not start or start <= day) and (not end or day <= end)


def plan_versions(session: Session, plan_value: str) -> list[dict[str, Any]]:
    """Every active InsurancePlan ``urn:hygeia:plan|VALUE`` (one a period)."""
    return [plan for plan in search(session, "InsurancePlan",
                                    [("identifier", f"{PLAN_SYSTEM}|{plan_value}")])
            if plan.get("status") == "active"]


def find_plan(session: Session, plan_value: str, day: str,
              versions: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The version of the plan ``urn:hygeia:plan|VALUE`` in force on ``day``: plans are
    versioned by effective period, the latest-starting one that holds the date wins."""
    found = [plan for plan in (plan_versions(session, plan_value) if versions is None
                               else versions) if in_force(plan.get("period"), day)]
    found.sort(key=lambda plan: str((plan.get("period") or {}).get("start") or ""))
    return found[-1] if found else None
