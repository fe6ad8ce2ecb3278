"""The accumulator ledger, kept as FHIR data: the adjudicated ClaimResponses themselves.

Each auto-adjudicated ClaimResponse is an append-only ledger entry: its totals
hold what the member paid toward the deductible, copays and coinsurance, and its
extensions the service date and the claim's duplicate keys. A member's balance
for a benefit period is the sum over the active entries of that calendar year of
the member (individual) and of every Coverage sharing the subscriber (family).
See docs/adr/0013-adjudication.md for why no separate table.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hygeia.insurance.codes import LEDGER_ORDER, SERVICE_DATE, amount
from hygeia.insurance.model import Accumulated
from hygeia.insurance.records import search
from hygeia.store import Session

if TYPE_CHECKING:
    from hygeia.insurance.model import Adjudication


def family_of(session: Session, coverage: dict[str, Any]) -> list[str]:
    """The Patient references of every Coverage on the same plan, subscriber and period."""
    subscriber = coverage.get("subscriberId")
    own = str((coverage.get("beneficiary") or {}).get("reference") or "")
    if not subscriber:
        return [own]
    plan = [c.get("value") for c in coverage.get("class") or []]
    members = {own}
    # R4 has no search parameter for subscriberId: narrow by the subscriber reference
    # when there is one, else read the plan's Coverages (the first records.LIMIT of them)
    criteria = [("class-value", str(v)) for v in plan[:1]]
    subscriber_ref = (coverage.get("subscriber") or {}).get("reference")
    if subscriber_ref:
        criteria.append(("subscriber", str(subscriber_ref)))
    for other in search(session, "Coverage", criteria):
        if other.get("subscriberId") == subscriber and other.get("status") == "active" and \
                [c.get("value") for c in other.get("class") or []][:1] == plan[:1] and \
                (other.get("period") or {}) == (coverage.get("period") or {}):
            members.add(str((other.get("beneficiary") or {}).get("reference") or ""))
    return sorted(members)


def service_date(response: dict[str, Any]) -> str:
    return next((str(e.get("valueDate")) for e in response.get("extension") or []
                 if e.get("url") == SERVICE_DATE), "")


def order_of(response: dict[str, Any]) -> str:
    """Where an entry sits in the ledger: service date, then first submission time."""
    return next((str(e.get("valueString")) for e in response.get("extension") or []
                 if e.get("url") == LEDGER_ORDER), "")


def entries(session: Session, family: list[str], year: str) -> list[dict[str, Any]]:
    """The family's active claim responses (adjudicated or pended) of that calendar year,
    in ledger order."""
    found = []
    for patient in family:
        for response in search(session, "ClaimResponse", [("patient", patient),
                                                          ("use", "claim")]):
            if response.get("status") == "active" and \
                    response.get("outcome") in ("complete", "queued") and \
                    service_date(response)[:4] == year:
                found.append(response)
    return sorted(found, key=order_of)


def history_of(session: Session, claim: Adjudication) -> list[dict[str, Any]]:
    """The ledger entries before ``claim`` (not its own earlier result)."""
    return [response for response in entries(session, claim.family, claim.service_date[:4])
            if order_of(response) < claim.order and
            (response.get("request") or {}).get("reference") != claim.claim_ref]


def total(response: dict[str, Any], category: str) -> Decimal:
    return sum((amount(t.get("amount")) for t in response.get("total") or []
                if any(c.get("code") == category for c in t["category"].get("coding") or [])),
               Decimal(0))


def accumulate(claim: Adjudication) -> Accumulated:
    """The member's and family's balances from the ledger entries before this claim."""
    done = Accumulated()
    for response in claim.history:
        if response.get("outcome") != "complete":
            continue
        deductible = total(response, "deductible")
        paid = deductible + total(response, "copay") + total(response, "coinsurance")
        done.family_deductible += deductible
        done.family_oop += paid
        if (response.get("patient") or {}).get("reference") == claim.patient:
            done.deductible += deductible
            done.oop += paid
    return done


def claim_key(claim: Adjudication, *, with_amounts: bool) -> str:
    """Patient, provider, service date and codes (and amounts): what makes a duplicate."""
    provider = str((claim.claim.get("provider") or {}).get("reference") or "")
    parts = [claim.patient, provider, claim.service_date[:10]]
    for line in sorted(claim.lines, key=lambda line: line.sequence):
        parts.append(",".join(code for _, code in line.codes))
        if with_amounts:
            parts.append(str(line.submitted))
    return "|".join(parts)
