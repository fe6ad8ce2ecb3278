"""The accumulator ledger, kept as FHIR data: the adjudicated ClaimResponses themselves.

Each auto-adjudicated ClaimResponse is an append-only ledger entry: its totals
hold what the member paid toward the deductible, copays and coinsurance, and its
extensions the service date and the claim's duplicate keys, and a ``meta.tag``
(:func:`ledger_tag`) files it in its family's ledger for the year. A member's
balance for a benefit period is the sum over the active entries of that calendar
year of the member (individual) and of every Coverage sharing the plan, the
subscriber id and the period (family).
See docs/adr/0013-adjudication.md for why no separate table.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hygeia.insurance.codes import LEDGER_ORDER, LEDGER_TAG, SERVICE_DATE, UNITS, amount
from hygeia.insurance.model import Accumulated
from hygeia.insurance.records import codings, search_all
from hygeia.store import Session

if TYPE_CHECKING:
    from hygeia.insurance.model import Adjudication


def family_key(coverage: dict[str, Any]) -> str:
    """What makes a family: the plan, the subscriber id (the member alone without one)
    and the coverage period. Every ledger entry is tagged with it and the year."""
    plan = next((str(c.get("value")) for c in coverage.get("class") or []
                 if "plan" in [code for _, code in codings(c.get("type"))]), "")
    family = coverage.get("subscriberId") or \
        (coverage.get("beneficiary") or {}).get("reference") or ""
    period = coverage.get("period") or {}
    return "\n".join([plan, str(family), str(period.get("start") or ""),
                      str(period.get("end") or "")])


def ledger_tag(coverage: dict[str, Any], year: str) -> dict[str, str]:
    """The ``meta.tag`` that files a ClaimResponse in its family's ledger of ``year``:
    a digest (no escaping in searches), with the parts readable in ``display``."""
    key = f"{family_key(coverage)}\n{year}"
    return {"system": LEDGER_TAG, "code": hashlib.sha256(key.encode()).hexdigest()[:40],
            "display": key.replace("\n", " | ")}


def cached_tag(cache: dict[Any, Any], coverage: dict[str, Any], year: str) -> dict[str, str]:
    """:func:`ledger_tag`, computed once per Coverage and year for a claim or a batch
    (``cache``: the adjudication's); the Coverage is kept beside its tag, so its ``id``
    names it. A copy: the caller may put it in a resource."""
    key = ("tag", id(coverage), year)
    found = cache.get(key)
    if found is None or found[0] is not coverage:
        found = cache[key] = (coverage, ledger_tag(coverage, year))
    return dict(found[1])


def service_date(response: dict[str, Any]) -> str:
    return next((str(e.get("valueDate")) for e in response.get("extension") or []
                 if e.get("url") == SERVICE_DATE), "")


def order_of(response: dict[str, Any]) -> str:
    """Where an entry sits in the ledger: service date, then first submission time."""
    return next((str(e.get("valueString")) for e in response.get("extension") or []
                 if e.get("url") == LEDGER_ORDER), "")


def entries(session: Session, coverage: dict[str, Any], year: str) -> list[dict[str, Any]]:
    """The family's active claim responses (adjudicated or pended) of that calendar year,
    in ledger order: one search on the ledger tag (no Coverage search, so no search
    parameter on ``subscriberId`` is needed)."""
    return entries_tagged(session, ledger_tag(coverage, year)["code"])


def entries_tagged(session: Session, code: str) -> list[dict[str, Any]]:
    """The active entries of the ledger whose :func:`ledger_tag` code is ``code``."""
    # sorted by id (any sort): one query for the keys, not a probe and then the keys
    found = [response for response in search_all(session, "ClaimResponse", [
                 ("_tag", f"{LEDGER_TAG}|{code}"), ("status", "active"), ("_sort", "_id")])
             if response.get("outcome") in ("complete", "queued")]
    return sorted(found, key=order_of)


def tag_of(response: dict[str, Any]) -> str | None:
    """The ledger (its tag code) a ClaimResponse is filed in, if any."""
    return next((str(t.get("code")) for t in (response.get("meta") or {}).get("tag") or []
                 if t.get("system") == LEDGER_TAG), None)


def effect(response: dict[str, Any]) -> tuple[Any, ...]:
    """What an entry adds to its ledger's balances: a claim whose entry keeps this
    after it is adjudicated again changes nothing for the family's later claims."""
    return (response.get("status"), response.get("outcome"),
            (response.get("patient") or {}).get("reference"),
            *(total(response, category) for category in ("deductible", "copay",
                                                          "coinsurance")),
            tuple(sorted(units_of(response).items())))


def history_of(claim: Adjudication) -> list[dict[str, Any]]:
    """The ledger entries before ``claim`` (not its own earlier result)."""
    return [response for response in claim.ledger
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
        deductible, paid = _shares_of(claim, response)
        done.family_deductible += deductible
        done.family_oop += paid
        if (response.get("patient") or {}).get("reference") == claim.patient:
            done.deductible += deductible
            done.oop += paid
            for category, count in units_of(response).items():
                done.units[category] = done.units.get(category, Decimal(0)) + count
    return done


def shares(response: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """An entry's deductible, and all the member paid (deductible, copay, coinsurance),
    in one pass over its totals."""
    deductible = paid = Decimal(0)
    for entry in response.get("total") or []:
        codes = [c.get("code") for c in (entry.get("category") or {}).get("coding") or []]
        if "deductible" in codes:
            value = amount(entry.get("amount"))
            deductible += value
            paid += value
        elif "copay" in codes or "coinsurance" in codes:
            paid += amount(entry.get("amount"))
    return deductible, paid


def _shares_of(claim: Adjudication, response: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """:func:`shares`, once per entry of a batch (the claims of a batch sum the same
    entries again and again). The entry is kept beside its sums, so the ``id`` names it."""
    key = ("shares", id(response))
    found = claim.cache.get(key)
    if found is None or found[0] is not response:
        found = claim.cache[key] = (response, shares(response))
    return found[1]


def units_of(response: dict[str, Any]) -> dict[str, Decimal]:
    """The visits or units a ledger entry used, by benefit category (its UNITS extensions)."""
    found: dict[str, Decimal] = {}
    for extension in response.get("extension") or []:
        if extension.get("url") == UNITS:
            parts = {e.get("url"): e for e in extension.get("extension") or []}
            category = str((parts.get("category") or {}).get("valueCode") or "")
            found[category] = found.get(category, Decimal(0)) + \
                amount({"value": (parts.get("count") or {}).get("valueDecimal")})
    return found


def claim_key(claim: Adjudication, *, with_amounts: bool) -> str:
    """Patient, provider, service date and codes (and amounts): what makes a duplicate."""
    provider = str((claim.claim.get("provider") or {}).get("reference") or "")
    parts = [claim.patient, provider, claim.service_date[:10]]
    for line in sorted(claim.lines, key=lambda line: line.sequence):
        parts.append(",".join(code for _, code in line.codes))
        if with_amounts:
            parts.append(str(line.submitted))
    return "|".join(parts)
