"""``Claim/$submit``, ``CoverageEligibilityRequest/$submit`` and ``Claim/$inquire``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hygeia.fhir.outcome import BadRequest, Conflict, FhirError, NotFound
from hygeia.insurance.codes import BENEFIT_TYPE, BENEFIT_UNIT, HYGEIA_BENEFIT_TYPE, money
from hygeia.insurance.ledger import accumulate, order_of
from hygeia.insurance.model import Adjudication
from hygeia.insurance.records import read, search
from hygeia.insurance.responses import claim_response
from hygeia.insurance.settlement import (
    is_secondary,
    readjudicate_after,
    settle_views,
    starts_of,
    store,
)
from hygeia.insurance.steps import adjudicate, eligibility, ledger_key, prefetch
from hygeia.server import FhirResponse
from hygeia.server.extensions import Operation, OperationCall
from hygeia.server.rest import write
from hygeia.store import Session

SUBMIT = "http://hl7.org/fhir/OperationDefinition/Claim-submit"
INQUIRE = "http://hl7.org/fhir/us/davinci-pas/OperationDefinition/Claim-inquiry"


def _claim_of(body: Any, expected: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The submitted resource and the resources a Bundle carries with it."""
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        entries = [e.get("resource") for e in body.get("entry") or [] if isinstance(e, dict)]
        if not entries or not isinstance(entries[0], dict):
            raise BadRequest("The Bundle has no entries: its first entry must be the "
                             f"{expected}.", expression="Bundle.entry")
        body, rest = entries[0], [e for e in entries[1:] if isinstance(e, dict)]
    else:
        rest = []
    if not isinstance(body, dict) or body.get("resourceType") != expected:
        raise BadRequest(f"$submit here takes a {expected} (or a Bundle whose first entry is "
                         "one).", expression=expected)
    write.validate_resource(body, expected)  # a malformed one is refused with where and why
    return body, rest


def submit_claim(session: Session, body: Any, cache: dict[Any, Any] | None = None
                 ) -> dict[str, Any]:
    """Adjudicate a submitted claim; a correction voids the claim it replaces first
    (``cache``: shared by the claims of one batch, see ``steps.adjudicate``)."""
    claim, others = _claim_of(body, "Claim")
    if claim.get("id") and [r for r in search(session, "ClaimResponse",
                                              [("request", f"Claim/{claim['id']}")])
                            if r.get("status") == "active"]:
        raise Conflict(f"Claim/{claim['id']} was already submitted: void it (status "
                       "cancelled) or send a corrected claim whose related.claim names it "
                       "as prior.", expression="Claim.id")
    for other in others:
        store(session, other)
    checked = adjudicate(session, claim, cache=cache)
    if checked.outcome == "error":
        return claim_response(checked, None)
    corrected = False
    for related in claim.get("related") or []:
        prior = (related.get("claim") or {}).get("reference")
        codes = [c.get("code") for c in (related.get("relationship") or {}).get("coding") or []]
        original = read(session, prior)
        if "prior" in codes and original is not None and original.get("status") != "cancelled":
            store(session, {**original, "status": "cancelled"})  # the write hook voids it
            corrected = True
    claim_ref = store(session, claim, validated=True)  # by _claim_of
    checked.claim_ref = claim_ref
    views = settle_views(session, claim, claim_ref, order=checked.order,
                         checked=None if corrected else checked)  # a void changed the ledger
    response = views[0]
    # a late claim: the later claims of its families (primary and secondary) again
    redone = readjudicate_after(session, starts_of(views),
                                None if corrected else _ledgers_of(checked))
    if cache is not None:
        _keep_ledger(cache, checked, response, changed=corrected or redone > 0)
    return response


def _ledgers_of(checked: Adjudication) -> dict[str, list[dict[str, Any]]]:
    """The family ledgers the adjudication read (its primary's and secondary's), by tag."""
    found = {}
    for view in (checked, checked.secondary):
        if view is not None and view.coverage is not None and view.rules is not None:
            found[ledger_key(view)[1]] = view.ledger
    return found


def _keep_ledger(cache: dict[Any, Any], checked: Adjudication, response: dict[str, Any],
                 *, changed: bool) -> None:
    """Keep a batch's cached family ledger current: add the new entry, or forget the
    ledgers when a void or a re-adjudication rewrote entries (they are read again)."""
    if changed:
        for key in [key for key in cache if key[0] == "ledger"]:
            del cache[key]
        return
    if checked.coverage is None or checked.rules is None:
        return
    if checked.secondary is not None:  # read again: it has a new entry
        cache.pop(ledger_key(checked.secondary), None)
    key = ledger_key(checked)
    if key in cache and response.get("use") == "claim" and \
            response.get("outcome") in ("complete", "queued"):
        cache[key] = sorted([*cache[key], response], key=order_of)


def eligibility_response(session: Session, body: Any) -> dict[str, Any]:
    request, others = _claim_of(body, "CoverageEligibilityRequest")
    for other in others:
        store(session, other)
    date = str(request.get("servicedDate") or request.get("created") or "")[:10]
    probe = Adjudication(claim={"insurance": request.get("insurance") or []}, lines=[],
                         service_date=date,
                         patient=str((request.get("patient") or {}).get("reference") or ""),
                         order=f"{date}|~")  # after every entry of that day
    coverage_ref = ((request.get("insurance") or [{}])[0].get("coverage") or {})
    probe.coverage = read(session, coverage_ref.get("reference"))
    if probe.coverage is None:
        raise NotFound("The coverage the request names does not exist.",
                       expression="CoverageEligibilityRequest.insurance.coverage")
    eligibility(session, probe)
    if probe.rules is None:
        raise BadRequest(" ".join(probe.errors), expression="CoverageEligibilityRequest")
    request_ref = store(session, request)
    rules, done = probe.rules, accumulate(probe)

    def balance(system: str, code: str, allowed: Any, used: Any) -> dict[str, Any]:
        return {"type": {"coding": [{"system": system, "code": code}]},
                "allowedMoney": money(allowed), "usedMoney": money(used)}

    def item(unit: str, benefits: list[dict[str, Any]]) -> dict[str, Any]:
        return {"category": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/ex-benefitcategory",
                    "code": "1"}]},
                "unit": {"coding": [{"system": BENEFIT_UNIT, "code": unit}]},
                "term": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                     "benefit-term", "code": "annual"}]},
                "benefit": benefits}

    def limit_item(category: str, most: Decimal, unit: str, used: Decimal
                   ) -> dict[str, Any]:
        """A visit (``benefit-type|visit``) or unit (Hygeia ``units``) limit: allowed and
        used this year, for the member."""
        system, code = (BENEFIT_TYPE, "visit") if unit == "visit" else \
            (HYGEIA_BENEFIT_TYPE, "units")
        return {**item("individual", [{
                    "type": {"coding": [{"system": system, "code": code}]},
                    "allowedUnsignedInt": int(most), "usedUnsignedInt": int(used)}]),
                "category": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/ex-benefitcategory",
                    "code": category}]}}

    inforce = "not-eligible" not in probe.claim_denied
    response = {
        "resourceType": "CoverageEligibilityResponse", "status": "active",
        "purpose": ["benefits"], "patient": request.get("patient"),
        "created": request.get("created") or date, "request": {"reference": request_ref},
        "outcome": "complete", "insurer": {"reference": rules.payer},
        "servicedDate": date,
        "insurance": [{"coverage": coverage_ref, "inforce": inforce, "item": [
            item("individual", [
                balance(BENEFIT_TYPE, "deductible", rules.deductible, done.deductible),
                balance(HYGEIA_BENEFIT_TYPE, "out-of-pocket-maximum", rules.oop_max,
                        done.oop)]),
            item("family", [
                balance(BENEFIT_TYPE, "deductible", rules.family_deductible,
                        done.family_deductible),
                balance(HYGEIA_BENEFIT_TYPE, "out-of-pocket-maximum", rules.family_oop_max,
                        done.family_oop)]),
            *[limit_item(category, most, unit, done.units.get(category, Decimal(0)))
              for category, (most, unit) in sorted(rules.limits.items())]]}]}
    response["id"] = store(session, response).split("/")[1]
    return response


MAX_BATCH = 1000  # Claims in one batch Bundle


def submit_batch(session: Session, bundle: dict[str, Any]) -> dict[str, Any]:
    """A ``batch`` Bundle of Claims, adjudicated in service-date order in one transaction;
    a batch-response with each entry's ClaimResponse (or OperationOutcome) in entry order."""
    claims = [e.get("resource") if isinstance(e, dict) else None
              for e in bundle.get("entry") or []]
    if len(claims) > MAX_BATCH:
        raise BadRequest(f"A batch holds at most {MAX_BATCH} Claims; this one has "
                         f"{len(claims)}.", expression="Bundle.entry")
    for index, claim in enumerate(claims):
        if not isinstance(claim, dict) or claim.get("resourceType") != "Claim":
            raise BadRequest("Every entry of a batch to Claim/$submit must be a Claim.",
                             expression=f"Bundle.entry[{index}].resource")

    def service_date(claim: dict[str, Any]) -> str:
        period = claim.get("billablePeriod")
        return str(period.get("start") or "") if isinstance(period, dict) else ""

    answers: dict[int, dict[str, Any]] = {}
    cache: dict[Any, Any] = {"batch": True}  # read once per batch, see steps.cached
    prefetch(session, [c for c in claims if isinstance(c, dict)], cache)
    for index in sorted(range(len(claims)), key=lambda i: service_date(claims[i] or {})):
        try:
            answers[index] = {"resource": submit_claim(session, claims[index], cache),
                              "response": {"status": "200"}}
        except FhirError as error:
            answers[index] = {"resource": error.outcome(),
                              "response": {"status": str(error.status)}}
    return {"resourceType": "Bundle", "type": "batch-response",
            "entry": [answers[index] for index in range(len(claims))]}


def submit(call: OperationCall) -> FhirResponse:
    assert call.session is not None
    body = call.request.body
    if call.resource_type == "Claim" and isinstance(body, dict) and \
            body.get("resourceType") == "Bundle" and body.get("type") == "batch":
        return FhirResponse(200, resource=submit_batch(call.session, body))
    if call.resource_type == "Claim":
        return FhirResponse(200, resource=submit_claim(call.session, call.request.body))
    return FhirResponse(200, resource=eligibility_response(call.session, call.request.body))


def inquire(call: OperationCall) -> FhirResponse:
    """The newest ClaimResponse of the claim a Parameters names (reference or identifier)."""
    assert call.session is not None
    body = call.request.body
    parameters = body.get("parameter") if isinstance(body, dict) else None
    reference = None
    for parameter in parameters or []:
        if parameter.get("name") == "claim":
            reference = (parameter.get("valueReference") or {}).get("reference")
        elif parameter.get("name") == "identifier":
            identifier = parameter.get("valueIdentifier") or {}
            token = f"{identifier.get('system', '')}|{identifier.get('value', '')}"
            found = search(call.session, "Claim", [("identifier", token)])
            reference = f"Claim/{found[0]['id']}" if found else None
    if not reference:
        raise NotFound("No claim matches the inquiry's claim or identifier parameter.",
                       expression="Parameters.parameter")
    responses = [r for r in search(call.session, "ClaimResponse",
                                   [("request", reference), ("_sort", "-_lastUpdated")])
                 if not is_secondary(r)]  # the primary's, the claim's own answer
    if not responses:
        raise NotFound(f"{reference} has no ClaimResponse.", expression="Parameters.parameter")
    return FhirResponse(200, resource=responses[0])


def operations() -> list[Operation]:
    return [
        Operation("submit", submit, {"Claim": SUBMIT, "CoverageEligibilityRequest":
                                     "http://hl7.org/fhir/OperationDefinition/"
                                     "CoverageEligibilityRequest-submit"},
                  types=frozenset({"Claim", "CoverageEligibilityRequest"}),
                  session="write", access="c",
                  documentation="Adjudicate a claim or answer an eligibility request "
                                "(docs/guide/insurance.md)."),
        Operation("inquire", inquire, INQUIRE, types=frozenset({"Claim"}), session="read",
                  access="r", documentation="The current ClaimResponse of a claim."),
    ]
