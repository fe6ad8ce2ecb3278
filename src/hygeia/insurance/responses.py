"""ClaimResponse and ExplanationOfBenefit from an adjudication: every amount, every reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hygeia.insurance.codes import (
    CATEGORIES,
    CLAIM_KEY,
    COB_ROLE,
    LEDGER_ORDER,
    REASON,
    REASONS,
    SERVICE_DATE,
    UNITS,
    money,
)
from hygeia.insurance.ledger import cached_tag, claim_key
from hygeia.insurance.model import ZERO, Adjudication, Line

PREAUTH_DAYS = 90  # an approval is valid this many days from the requested service date


def _category(code: str, value: Decimal) -> dict[str, Any]:
    return {"category": {"coding": [{"system": CATEGORIES[code], "code": code}]},
            "amount": money(value)}


def line_amounts(line: Line, *, combined: bool = False) -> dict[str, Decimal]:
    """The line's amounts from one plan's view; ``combined``: the member's view, where
    a secondary coverage's payment (``secondary``) is part of ``benefit`` and comes off
    ``memberliability``. (Each of the line's properties is read once: ``liability`` is
    ``eligible - benefit``.)"""
    eligible, benefit = line.eligible, line.benefit
    amounts = {"submitted": line.submitted, "eligible": eligible,
               "deductible": line.deductible, "copay": line.copay,
               "coinsurance": line.coinsurance, "benefit": benefit,
               "memberliability": eligible - benefit,
               "noncovered": line.submitted - eligible}
    if combined:
        amounts["secondary"] = line.secondary
        amounts["benefit"] += line.secondary
        amounts["memberliability"] -= line.secondary
    return amounts


def adjudications(line: Line, *, combined: bool = False,
                  amounts: dict[str, Decimal] | None = None) -> list[dict[str, Any]]:
    """The line's amounts (``amounts``: its :func:`line_amounts`, when the caller has
    them); the first entry carries the reason of a denied or reduced line."""
    if amounts is None:
        amounts = line_amounts(line, combined=combined)
    entries = [_category(code, value) for code, value in amounts.items()]
    reasons = line.denied or line.reduced
    for entry, code in zip(entries, reasons, strict=False):
        entry["reason"] = {"coding": [{"system": REASON, "code": code}], "text": REASONS[code]}
    return entries


def totals(claim: Adjudication, *, combined: bool = False,
           amounts: list[dict[str, Decimal]] | None = None) -> list[dict[str, Any]]:
    """The sums of the lines' amounts (``amounts``: each line's :func:`line_amounts`)."""
    sums: dict[str, Decimal] = {}
    for found in amounts if amounts is not None else \
            [line_amounts(line, combined=combined) for line in claim.lines]:
        for code, value in found.items():
            sums[code] = sums.get(code, ZERO) + value
    if not sums:
        sums = {code: ZERO for code in CATEGORIES if code != "secondary"}
    return [_category(code, value) for code, value in sums.items()]


def claim_response(claim: Adjudication, claim_ref: str | None, *,
                   secondary: bool = False) -> dict[str, Any]:
    """The ClaimResponse of one plan's view (``secondary``: the secondary coverage's,
    which is not a duplicate key and names what it paid after the primary)."""
    outcome = claim.outcome
    resource: dict[str, Any] = {
        "resourceType": "ClaimResponse", "status": "active",
        "type": claim.claim.get("type") or {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": claim.claim.get("use") or "claim",
        "patient": {"reference": claim.patient} if claim.patient else {"display": "unknown"},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "insurer": {"reference": claim.rules.payer} if claim.rules else {"display": "unknown"},
        "outcome": outcome,
        "extension": [{"url": SERVICE_DATE, "valueDate": claim.service_date[:10]},
                      {"url": LEDGER_ORDER, "valueString": claim.order}]}
    if secondary:
        resource["extension"].append({"url": COB_ROLE, "valueCode": "secondary"})
    else:
        resource["extension"].extend([
            {"url": CLAIM_KEY, "valueString": claim_key(claim, with_amounts=True)},
            {"url": CLAIM_KEY + ":near", "valueString": claim_key(claim, with_amounts=False)}])
    if claim_ref:
        resource["request"] = {"reference": claim_ref}
    if claim.coverage is not None and outcome != "error" and resource["use"] == "claim":
        resource["meta"] = {"tag": [cached_tag(claim.cache, claim.coverage,
                                               claim.service_date[:4])]}
    if claim.coverage is not None:
        resource["insurance"] = [{"sequence": 1, "focal": True, "coverage": {
            "reference": f"Coverage/{claim.coverage.get('id')}"}}]
    if outcome == "error":
        resource["disposition"] = " ".join(claim.errors)
        resource["error"] = [{"code": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/adjudication-error",
            "code": "a001"}], "text": text}} for text in claim.errors]
        return resource
    if outcome == "queued":
        evidence = claim.pended + [text for line in claim.lines for text in line.pended]
        resource["disposition"] = "Pended for review: " + " ".join(evidence)
        return resource
    resource["disposition"] = "Claim settled as per contract." if not claim.claim_denied \
        else "Claim denied: " + " ".join(REASONS[c] for c in claim.claim_denied)
    if secondary:
        resource["disposition"] = "Secondary coverage: pays what the member owes after the " \
            "primary plan, up to what it would pay as the only plan."
    amounts = [line_amounts(line) for line in claim.lines]  # for the items and the totals
    resource["item"] = [{"itemSequence": line.sequence,
                         "adjudication": adjudications(line, amounts=found)}
                        for line, found in zip(claim.lines, amounts, strict=True)]
    used: dict[str, Decimal] = {}
    for line in claim.lines:
        if line.units and not line.denied:
            used[line.category] = used.get(line.category, Decimal(0)) + line.units
    resource["extension"].extend(
        {"url": UNITS, "extension": [{"url": "category", "valueCode": category},
                                     {"url": "count", "valueDecimal": float(count)}]}
        for category, count in sorted(used.items()))
    resource["total"] = totals(claim, amounts=amounts)
    if resource["use"] == "preauthorization" and claim_ref and \
            not any(line.denied for line in claim.lines):
        resource["preAuthRef"] = claim_ref.split("/")[1]
        start = date.fromisoformat(claim.service_date[:10])
        resource["preAuthPeriod"] = {"start": start.isoformat(),
                                     "end": (start + timedelta(days=PREAUTH_DAYS)).isoformat()}
    benefit = sum((line.benefit for line in claim.lines), Decimal("0.00"))
    resource["payment"] = {"type": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype", "code": "complete"}]},
        "amount": money(benefit)}
    return resource


def explanation(claim: Adjudication, response: dict[str, Any], claim_ref: str,
                response_ref: str) -> dict[str, Any]:
    """The EOB of an auto-adjudicated claim: the response's amounts with the claim's items."""
    items = []
    combined = claim.secondary is not None
    for line, decided in zip(claim.lines, response.get("item") or [], strict=True):
        items.append({"sequence": line.sequence,
                      "productOrService": line.item.get("productOrService"),
                      "servicedDate": line.service_date[:10],
                      "net": money(line.submitted),
                      "adjudication": adjudications(line, combined=True) if combined
                      else decided["adjudication"],
                      **({"category": line.item["category"]} if "category" in line.item else {})})
    insurance = [{"focal": True, "coverage": i["coverage"]}
                 for i in response.get("insurance") or []]
    notes = []
    if claim.secondary is not None and claim.secondary.coverage is not None:
        insurance.append({"focal": False, "coverage": {
            "reference": f"Coverage/{claim.secondary.coverage.get('id')}"}})
        paid = sum((line.secondary for line in claim.lines), Decimal("0.00"))
        owed = sum((line.member for line in claim.lines), Decimal("0.00"))
        notes.append({"number": 1, "type": "display", "text": (
            f"Your primary plan left you {money(owed)['value']:.2f} USD to pay; your "
            f"secondary coverage paid {money(paid)['value']:.2f} USD of it (the "
            "'secondary' amounts), so you owe "
            f"{money(owed - paid)['value']:.2f} USD. Each line's benefit is what both "
            "plans paid together.")})
    payment = response["payment"] if not combined else {
        **response["payment"], "amount": money(sum((line.benefit + line.secondary
                                                    for line in claim.lines),
                                                   Decimal("0.00")))}
    return {"resourceType": "ExplanationOfBenefit", "status": "active",
            "type": response["type"], "use": response["use"], "patient": response["patient"],
            "created": response["created"], "insurer": response["insurer"],
            "provider": claim.claim.get("provider") or {"display": "unknown"},
            "outcome": response["outcome"], "disposition": response["disposition"],
            "claim": {"reference": claim_ref}, "claimResponse": {"reference": response_ref},
            "billablePeriod": {"start": claim.service_date[:10]},
            "insurance": insurance, "item": items,
            "total": totals(claim, combined=True) if combined else response["total"],
            "payment": payment, **({"processNote": notes} if notes else {})}
