"""The adjudication pipeline, one small step per concern, in the contract's order.

Each step reads the claim, the record and the plan's data and writes its findings
onto the :class:`~hygeia.insurance.model.Adjudication`; :data:`PIPELINE` is the
ordered list, so a step is replaced or added by editing that list. Steps after a
claim-level error or denial still run only where they make sense (they check).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from importlib import resources
from typing import Any

from hygeia.insurance.codes import BENEFIT_CATEGORY, CLAIM_KEY, LEDGER_TAG, amount, cents
from hygeia.insurance.ledger import (
    accumulate,
    cached_tag,
    claim_key,
    entries,
    history_of,
    order_of,
)
from hygeia.insurance.model import ZERO, Adjudication, Line
from hygeia.insurance.plan import (
    PLAN_SYSTEM,
    SHARED,
    fee_definitions,
    in_force,
    plan_versions,
    rules_on,
)
from hygeia.insurance.records import LIMIT, codings, patient_record, read, search
from hygeia.store import Session

Step = Callable[[Session, Adjudication], None]

MAX_ITEMS = 999  # items a claim may hold (a front-end error beyond)

# Coding edits as data (tables/coding_edits.json): code pairs never billed together,
# units per day, and the ages and sex a code may be billed for.
_EDITS = json.loads((resources.files("hygeia.insurance") / "tables" / "coding_edits.json")
                    .read_text(encoding="utf-8"))
EXCLUSIVE_PAIRS: frozenset[frozenset[str]] = frozenset(
    frozenset(pair["codes"]) for pair in _EDITS["exclusive_pairs"])
UNITS_PER_DAY: dict[str, int] = {code: int(row["units"])
                                 for code, row in _EDITS["units_per_day"].items()}
AGES: dict[str, tuple[int, int]] = {code: (int(row["from"]), int(row["to"]))
                                    for code, row in _EDITS["age"].items()}
SEXES: dict[str, str] = {code: str(row["gender"]) for code, row in _EDITS["sex"].items()}


def cached(claim: Adjudication, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
    """What ``read`` returns, once per batch: a batch of Claims (one transaction, holding
    each family's ledger lock from its first claim on) changes no Coverage, Condition or
    plan, and keeps each family's ledger in ``claim.cache`` up to date itself
    (``operations.submit_claim``)."""
    if key not in claim.cache:
        claim.cache[key] = read()
    return claim.cache[key]


def ledger_lock(coverage: dict[str, Any]) -> str:
    """The lock that settles one family's claims one at a time."""
    plan_value = next((c.get("value") for c in coverage.get("class") or []
                       if "plan" in [code for _, code in codings(c.get("type"))]), None)
    family = coverage.get("subscriberId") or \
        (coverage.get("beneficiary") or {}).get("reference") or ""
    return f"hygeia.insurance.ledger:{plan_value}:{family}"


PREFETCH_CHUNK = 50  # keys a prefetch search names at once (the server allows 100)


def prefetch(session: Session, claims: list[dict[str, Any]], cache: dict[Any, Any]) -> None:
    """Fill a batch's cache before its first write, a few searches for the whole batch
    instead of some for each claim (so the batch's writes flush once, at the end): the
    coverages, the encounters' heads, the patients' coverages and the conditions
    of the diagnoses their claims name, and, under each family's lock
    (taken at once, in a fixed order), each family's ledger for the years the batch bills. A
    search that may have been cut at ``records.LIMIT`` fills nothing: those claims
    read for themselves, as a single claim does."""
    def chunks(keys: list[str]) -> list[list[str]]:
        return [keys[i:i + PREFETCH_CHUNK] for i in range(0, len(keys), PREFETCH_CHUNK)]

    _prefetch_reads(session, "Coverage", {_coverage_ref(claim) for claim in claims}, cache)
    encounters = sorted({str(_dig(encounter, "reference")) for claim in claims
                         for item in _list(claim.get("item")) if isinstance(item, dict)
                         for encounter in _list(item.get("encounter"))})
    cache.update({("exists", reference): found
                  for reference, found in exist(session, encounters).items()})
    patients = sorted({str(_dig(claim, "patient", "reference")) for claim in claims}
                      - {""})
    wanted: dict[str, set[tuple[str, str]]] = {}  # patient -> the diagnoses its claims name
    for claim in claims:
        wanted.setdefault(str(_dig(claim, "patient", "reference")), set()).update(
            diagnosis_codes(claim))
    for kind, parameter, extra in (("conditions", "patient", []),
                                   ("coverages", "beneficiary", [("status", "active")])):
        resource_type = "Condition" if kind == "conditions" else "Coverage"
        for part in chunks(patients):
            codes = set().union(*(wanted[patient] for patient in part))
            if kind == "conditions" and not codes:
                continue  # no claim of theirs names a diagnosis
            found = search(session, resource_type, [
                (parameter, ",".join(part)),
                *(code_filter(codes) if kind == "conditions" else extra)])
            if len(found) >= LIMIT:
                continue
            field = "subject" if kind == "conditions" else "beneficiary"
            for patient in part:
                cache[(kind, patient)] = [r for r in found if
                                          (r.get(field) or {}).get("reference") == patient]
    families: dict[str, dict[str, Any]] = {}
    tags: set[str] = set()
    for claim in claims:
        coverage = cache.get(("read", _coverage_ref(claim)))
        day = str(_dig(claim, "billablePeriod", "start"))
        if isinstance(coverage, dict) and _is_date(day):
            families[ledger_lock(coverage)] = coverage
            tags.add(cached_tag(cache, coverage, day[:4])["code"])
    session.lock_all(families)  # in sorted order, one round trip where the store can
    for lock in families:
        cache[("lock", lock)] = None
    for part in chunks(sorted(tags)):
        found = search(session, "ClaimResponse", [
            ("_tag", ",".join(f"{LEDGER_TAG}|{code}" for code in part)), ("status", "active")])
        if len(found) >= LIMIT:
            continue
        for code in part:
            cache[("ledger", code)] = sorted(
                (r for r in found if r.get("outcome") in ("complete", "queued") and
                 code in [t.get("code") for t in (r.get("meta") or {}).get("tag") or []]),
                key=order_of)


def _prefetch_reads(session: Session, resource_type: str, references: set[str],
                    cache: dict[Any, Any]) -> None:
    """What ``read`` would answer for each ``resource_type/id`` of ``references``, into
    ``cache``, a search by ``_id`` for :data:`PREFETCH_CHUNK` of them at once."""
    ids = sorted(ref.split("/", 1)[1] for ref in references
                 if ref.startswith(f"{resource_type}/") and ref.count("/") == 1 and
                 _ID.fullmatch(ref.split("/", 1)[1]))  # (claims not validated yet)
    for start in range(0, len(ids), PREFETCH_CHUNK):
        part = ids[start:start + PREFETCH_CHUNK]
        found = {r.get("id"): r for r in search(session, resource_type,
                                                  [("_id", ",".join(part))])}
        if len(found) < LIMIT:
            for id in part:
                cache[("read", f"{resource_type}/{id}")] = found.get(id)


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # a FHIR id
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")  # a resource type's name


def exist(session: Session, references: list[str]) -> dict[str, bool]:
    """Whether each relative reference ``Type/id`` names a current resource, from the
    resources' heads (one round trip for them all, no content read or parsed: a claim
    only needs its encounters to be in the record). References of another form are
    left out (the caller reads them)."""
    keys: dict[str, tuple[str, str]] = {}
    for reference in references:
        kind, _, id = reference.partition("/")
        if _TYPE.fullmatch(kind) and _ID.fullmatch(id):
            keys[reference] = (kind, id)
    heads = session.heads(sorted(set(keys.values()))) if keys else {}
    return {reference: key in heads and not heads[key].deleted
            for reference, key in keys.items()}


def _exists(session: Session, reference: str) -> bool:
    """Whether ``reference`` names a current resource (see :func:`exist`)."""
    found = exist(session, [reference])
    return found[reference] if reference in found else read(session, reference) is not None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dig(resource: Any, *path: str) -> Any:
    """``resource[path[0]][path[1]]...``, or "" where something is missing or not an object
    (a batch is read before its claims are validated)."""
    for name in path:
        resource = resource.get(name) if isinstance(resource, dict) else None
    return resource if isinstance(resource, str) else ""


def _coverage_ref(claim: dict[str, Any]) -> str:
    insurance = claim.get("insurance")
    first = insurance[0] if isinstance(insurance, list) and insurance else None
    return str(_dig(first, "coverage", "reference"))


def ledger_key(claim: Adjudication) -> tuple[str, ...]:
    """The cache key of the claim's family ledger for its year."""
    assert claim.coverage is not None
    return ("ledger", cached_tag(claim.cache, claim.coverage, claim.service_date[:4])["code"])


def lines_of(claim: dict[str, Any], default_date: str) -> list[Line]:
    lines = []
    for index, item in enumerate(claim.get("item") or []):
        if not isinstance(item, dict):
            continue
        category = next((c for s, c in codings(item.get("category")) if s == BENEFIT_CATEGORY),
                        "")
        sequence = item.get("sequence")
        lines.append(Line(sequence=sequence if isinstance(sequence, int) else index + 1,
                          item=item,
                          codes=codings(item.get("productOrService")), category=category,
                          submitted=cents(amount(item.get("net"))),
                          service_date=str(item.get("servicedDate") or default_date)))
    return lines


def front_end(session: Session, claim: Adjudication) -> None:
    """Required elements, dates, codes, and the patient the coverage names."""
    if not claim.patient.startswith("Patient/"):
        claim.errors.append("The claim names no patient (Claim.patient).")
    if not claim.lines:
        claim.errors.append("The claim has no items (Claim.item).")
    if len(claim.lines) > MAX_ITEMS:
        claim.errors.append(f"The claim has more than {MAX_ITEMS} items.")
    if len(claim.service_date) < 10:
        claim.errors.append("The claim has no service date (Claim.billablePeriod.start "
                            "or Claim.item.servicedDate).")
    for line in claim.lines:
        if not _is_date(line.service_date):
            claim.errors.append(f"Item {line.sequence} has no valid service date.")
        if not line.codes:
            claim.errors.append(f"Item {line.sequence} has no service code.")
        if line.submitted <= 0:
            claim.errors.append(f"Item {line.sequence} has no positive net amount.")
    reference = str(_coverage_ref(claim.claim))
    claim.coverage = cached(claim, ("read", reference),
                            lambda: _coverage(session, claim, reference))
    if claim.coverage is None:
        claim.errors.append("The coverage the claim names does not exist "
                            "(Claim.insurance.coverage).")
    elif (claim.coverage.get("beneficiary") or {}).get("reference") != claim.patient:
        claim.errors.append("The coverage belongs to another patient than the claim's.")


def _coverage(session: Session, claim: Adjudication, reference: str
              ) -> dict[str, Any] | None:
    """The claim's Coverage, found among the patient's active coverages, which
    coordination of benefits reads anyway (a read only when it is not one of them)."""
    if claim.patient.startswith("Patient/") and reference.startswith("Coverage/"):
        mine = _active_coverages(session, claim)
        found = next((c for c in mine if f"Coverage/{c.get('id')}" == reference), None)
        if found is not None:
            return found
    return read(session, reference)


def _active_coverages(session: Session, claim: Adjudication) -> list[dict[str, Any]]:
    """The patient's active coverages (read once per claim, or per batch)."""
    if ("coverages", claim.patient) not in claim.cache and "batch" not in claim.cache:
        _read_member(session, claim)
    return list(cached(claim, ("coverages", claim.patient), lambda: search(
        session, "Coverage", [("beneficiary", claim.patient), ("status", "active")])))


def _read_member(session: Session, claim: Adjudication) -> None:
    """What a single claim reads of its member's record, in one search: the Patient
    (the age and sex checks), their active Coverages and, when the claim names a
    diagnosis, their Conditions (a superset, as a batch's prefetch: ``necessity``
    checks the codes): on PostgreSQL two round trips instead of up to five, and each
    round trip also costs the serving thread a wait for the GIL. Nothing is filled
    when the search may have been cut: each kind is then read on its own."""
    kind, _, id = claim.patient.partition("/")
    if kind != "Patient" or not _ID.fullmatch(id):
        return
    conditions = bool(diagnosis_codes(claim.claim))
    found = patient_record(session, id, ("Patient", "Coverage",
                                         *(("Condition",) if conditions else ())),
                           ("beneficiary", "patient"))
    if found is None:
        return

    def of(resource_type: str, field: str) -> list[dict[str, Any]]:
        return [r for r in found if r.get("resourceType") == resource_type and
                (r.get(field) or {}).get("reference") == claim.patient]

    claim.cache[("read", claim.patient)] = next(
        (r for r in found if r.get("resourceType") == "Patient" and r.get("id") == id), None)
    claim.cache[("coverages", claim.patient)] = [
        c for c in of("Coverage", "beneficiary") if c.get("status") == "active"]
    if conditions:
        claim.cache[("conditions", claim.patient)] = of("Condition", "subject")


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text[:10])
    except ValueError:
        return False
    return True


def eligibility(session: Session, claim: Adjudication) -> None:
    """Active coverage on the service date, on a plan the server knows."""
    if claim.errors or claim.coverage is None:
        return
    coverage = claim.coverage
    period = coverage.get("period") or {}
    active = coverage.get("status") == "active" and \
        str(period.get("start") or "")[:10] <= claim.service_date[:10] and \
        (not period.get("end") or claim.service_date[:10] <= str(period["end"])[:10])
    plan_value = next((c.get("value") for c in coverage.get("class") or []
                       if "plan" in [code for _, code in codings(c.get("type"))]), None)
    day = claim.service_date[:10]
    key = ("rules", str(plan_value), day)
    if key not in claim.cache and "batch" in claim.cache:
        versions = cached(claim, ("plans", str(plan_value)),
                          lambda: plan_versions(session, str(plan_value)))
        claim.cache[key] = rules_on(session, str(plan_value), day, versions,
                                    cached(claim, ("fees",), lambda: fee_definitions(session)),
                                    cached(claim, ("computed",), dict)) if plan_value else None
    elif key not in claim.cache:  # one claim: the serving process's copy (plan.SHARED)
        claim.cache[key] = SHARED.get(session, str(plan_value), day) if plan_value else None
    claim.rules = claim.cache[key]
    if claim.rules is None:
        claim.errors.append(f"The coverage names no plan this payer knows ({PLAN_SYSTEM}).")
        return
    if not active:
        claim.claim_denied.append("not-eligible")
    start = str(period.get("start") or "")[:10]
    for line in claim.lines:  # waiting periods: days from the coverage's start
        days = claim.rules.waiting_days.get(line.category)
        if days and _is_date(start) and _is_date(line.service_date) and \
                date.fromisoformat(line.service_date[:10]) < \
                date.fromisoformat(start) + timedelta(days=days):
            line.denied.append("waiting-period")
    # one family's claims are settled one at a time: each reads the ledger the last wrote
    lock = ledger_lock(coverage)
    cached(claim, ("lock", lock), lambda: session.lock(lock))  # held to the commit
    claim.ledger = list(cached(claim, ledger_key(claim),
                               lambda: entries(session, coverage, claim.service_date[:4])))
    claim.history = history_of(claim)


def duplicates(session: Session, claim: Adjudication) -> None:
    """An exact duplicate of a paid or pending claim is denied; a near one pends."""
    if claim.errors:
        return
    exact, near = claim_key(claim, with_amounts=True), claim_key(claim, with_amounts=False)
    for earlier in claim.history:
        if (earlier.get("patient") or {}).get("reference") != claim.patient:
            continue
        keys = {e.get("url"): e.get("valueString") for e in earlier.get("extension") or []}
        if keys.get(CLAIM_KEY) == exact:
            claim.claim_denied.append("duplicate")
            return
        if keys.get(CLAIM_KEY + ":near") == near:
            claim.pended.append("A claim for the same services on the same day with other "
                                "amounts was already submitted: a reviewer checks it.")
            return


def pricing(session: Session, claim: Adjudication) -> None:
    """Allowed amount: the item's net, capped by the fee schedule where it lists the code."""
    if claim.rules is None:
        return
    for line in claim.lines:
        fee = next((claim.rules.fees[c] for c in line.codes if c in claim.rules.fees), None)
        line.allowed = line.submitted if fee is None else min(line.submitted, fee)
        if line.allowed < line.submitted:
            line.reduced.append("above-fee-schedule")


def benefits(session: Session, claim: Adjudication) -> None:
    """Prior authorization where the plan needs one: an approved preauthorization
    (a preauthorization request itself is what asks for one)."""
    if claim.rules is None:
        return
    _network(session, claim)
    _restrictions(session, claim)
    if claim.claim.get("use", "claim") != "claim":
        return
    refs = [str(r) for i in claim.claim.get("insurance") or [] for r in i.get("preAuthRef") or []]
    needed = [line for line in claim.lines if line.category in claim.rules.prior_auth]
    approvals = _approvals(session, claim, refs) if needed and refs else []
    for line in needed:
        if not any(in_force(period, line.service_date[:10]) and set(line.codes) & codes
                   for period, codes in approvals):
            line.denied.append("no-prior-auth")


def _restrictions(session: Session, claim: Adjudication) -> None:
    """The plan's age and sex restrictions of a benefit category (the patient is read
    only when a line's category has one)."""
    rules = claim.rules
    restricted = [line for line in claim.lines if rules is not None and
                  (line.category in rules.ages or line.category in rules.sexes)]
    if rules is None or not restricted:
        return
    patient = cached(claim, ("read", claim.patient), lambda: read(session, claim.patient))
    if patient is None:
        return
    for line in restricted:
        age = _age(patient, line.service_date)
        low, high = rules.ages.get(line.category, (0, 200))
        if age is not None and not low <= age <= high:
            line.denied.append("age-restriction")
        wanted = rules.sexes.get(line.category)
        if wanted and patient.get("gender") not in (None, "unknown", wanted):
            line.denied.append("sex-restriction")


def _network(session: Session, claim: Adjudication) -> None:
    """A plan with networks covers a provider out of them at its out-of-network
    coinsurance, or not at all. A provider is in a network when an active
    OrganizationAffiliation names it as ``participatingOrganization`` and the network
    among its ``network``s."""
    rules = claim.rules
    if rules is None or not rules.networks:
        return
    provider = str((claim.claim.get("provider") or {}).get("reference") or "")
    affiliations = cached(claim, ("affiliations", provider), lambda: search(
        session, "OrganizationAffiliation", [("participating-organization", provider)])
        if provider.startswith("Organization/") else [])
    inside = any(a.get("active", True) is not False and
                 in_force(a.get("period"), claim.service_date[:10]) and
                 rules.networks & {str(n.get("reference")) for n in a.get("network") or []}
                 for a in affiliations)
    if inside:
        return
    claim.out_of_network = True
    for line in claim.lines:
        (line.denied if rules.oon_coinsurance is None else line.reduced).append(
            "out-of-network")


def _approvals(session: Session, claim: Adjudication, refs: list[str]
               ) -> list[tuple[Any, set[tuple[str, str]]]]:
    """The patient's approved preauthorizations the claim names: (period, service codes)."""
    found = []
    for response in search(session, "ClaimResponse", [("patient", claim.patient),
                                                      ("use", "preauthorization")]):
        if response.get("status") == "active" and response.get("outcome") == "complete" and \
                response.get("preAuthRef") in refs:
            request = read(session, (response.get("request") or {}).get("reference")) or {}
            codes = {code for item in request.get("item") or [] if isinstance(item, dict)
                     for code in codings(item.get("productOrService"))}
            found.append((response.get("preAuthPeriod"), codes))
    return found


def coding_edits(session: Session, claim: Adjudication) -> None:
    """Mutually exclusive code pairs, units per day, and age and sex conflicts, from the
    tables above (the patient is read only for a code the age or sex table lists)."""
    earlier: list[str] = []  # codes of the lines before: the later line of a pair is denied
    listed = any(code in AGES or code in SEXES for line in claim.lines for _, code in line.codes)
    patient = cached(claim, ("read", claim.patient),
                     lambda: read(session, claim.patient)) if listed else None
    for line in claim.lines:
        for _, code in line.codes:
            if patient is not None and code in SEXES and \
                    patient.get("gender") not in (None, "unknown", SEXES[code]):
                line.denied.append("sex-conflict")
            age = _age(patient, line.service_date) if patient is not None else None
            if code in AGES and age is not None and \
                    not AGES[code][0] <= age <= AGES[code][1]:
                line.denied.append("age-conflict")
            if any(frozenset({code, other}) in EXCLUSIVE_PAIRS for other in earlier):
                line.denied.append("exclusive-codes")
            limit = UNITS_PER_DAY.get(code)
            units = amount({"value": (line.item.get("quantity") or {}).get("value", 1)})
            if limit is not None and units > limit:
                line.denied.append("units-per-day")
        earlier.extend(code for _, code in line.codes)


def _age(patient: dict[str, Any], day: str) -> int | None:
    """Whole years from the patient's birth date to ``day`` (None when either is unknown)."""
    born = str(patient.get("birthDate") or "")
    if len(born) < 10 or not _is_date(born) or not _is_date(day):
        return None
    birth, on = date.fromisoformat(born[:10]), date.fromisoformat(day[:10])
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def necessity(session: Session, claim: Adjudication) -> None:
    """Record-aware: each diagnosis is an active Condition on the date; each encounter exists."""
    if claim.errors or claim.claim_denied:
        return
    diagnoses = {d.get("sequence"): codings(d.get("diagnosisCodeableConcept"))
                 for d in claim.claim.get("diagnosis") or [] if isinstance(d, dict)}

    def conditions() -> list[dict[str, Any]]:  # read only for a claim that names a diagnosis
        prefetched = claim.cache.get(("conditions", claim.patient))  # a batch's: a superset
        if prefetched is not None:
            return list(prefetched)
        codes = diagnosis_codes(claim.claim)
        return list(cached(claim, ("conditions", claim.patient, *sorted(codes)), lambda: search(
            session, "Condition", [("patient", claim.patient), *code_filter(codes)])))

    for line in claim.lines:
        if claim.claim.get("use") == "preauthorization" and \
                not line.item.get("diagnosisSequence"):
            line.pended.append(f"Item {line.sequence} names no diagnosis to authorize it for.")
        for sequence in line.item.get("diagnosisSequence") or []:
            wanted = set(diagnoses.get(sequence, []))
            if wanted and not any(_documented(c, wanted, line.service_date)
                                  for c in conditions()):
                codes = ", ".join(code for _, code in sorted(wanted))
                line.pended.append(f"The diagnosis {codes} is not documented as an active "
                                   f"condition of the patient on {line.service_date[:10]}.")
        for encounter in line.item.get("encounter") or []:
            reference = str(encounter.get("reference"))
            if not cached(claim, ("exists", reference), partial(_exists, session, reference)):
                line.pended.append(f"The encounter {encounter.get('reference')} is not in "
                                   "the patient's record.")


MAX_CODES = 50  # diagnosis codes a Condition search names at once (all conditions beyond)


def diagnosis_codes(claim: dict[str, Any]) -> set[tuple[str, str]]:
    """The (system, code) pairs of every diagnosis the claim names."""
    diagnoses = claim.get("diagnosis")
    return {coding for d in diagnoses if isinstance(d, dict)
            for coding in codings(d.get("diagnosisCodeableConcept"))} \
        if isinstance(diagnoses, list) else set()


def code_filter(codes: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """A Condition ``code`` parameter matching any of ``codes`` (a superset: a code
    without system matches every system; :func:`_documented` checks the pair), or none
    when there are more than :data:`MAX_CODES`: only the conditions a claim may match
    are read and parsed, not the patient's whole problem list."""
    if not codes or len(codes) > MAX_CODES:
        return []
    return [("code", ",".join(f"{_escape(system)}|{_escape(code)}" if system else
                              _escape(code) for system, code in sorted(codes)))]


def _escape(value: str) -> str:
    """A search value with FHIR's reserved characters escaped."""
    return re.sub(r"([\\,|$])", r"\\\1", value)


def _documented(condition: dict[str, Any], wanted: set[tuple[str, str]], date: str) -> bool:
    if not wanted & set(codings(condition.get("code"))):
        return False
    status = [c for s, c in codings(condition.get("clinicalStatus"))]
    onset = str(condition.get("onsetDateTime") or condition.get("recordedDate") or "")[:10]
    ended = str(condition.get("abatementDateTime") or "")[:10]
    day = date[:10]
    return (not onset or onset <= day) and (not ended or day <= ended) and \
        bool({"active", "recurrence", "relapse"} & set(status) or (ended and day <= ended))


def review_decision(session: Session, claim: Adjudication) -> None:
    """A reviewer's decision settles what pended: approve pays it, deny denies it."""
    if claim.review is None or claim.errors:
        return
    claim.pended.clear()
    for line in claim.lines:
        line.pended.clear()
    if claim.review == "deny":
        claim.claim_denied.append("review-denied")


def cost_sharing(session: Session, claim: Adjudication) -> None:
    """Copay, deductible and coinsurance against the ledger, up to the out-of-pocket maximum."""
    rules = claim.rules
    if rules is None or claim.outcome != "complete":
        return
    if claim.claim_denied:
        for line in claim.lines:
            line.denied.extend(claim.claim_denied)
        return
    done = claim.accumulated = accumulate(claim)
    copay_left = {category: value for category, value in rules.copays.items()}
    coinsurance = rules.oon_coinsurance if claim.out_of_network and \
        rules.oon_coinsurance is not None else rules.coinsurance
    for line in claim.lines:
        if line.denied:
            continue
        limit = rules.limits.get(line.category)
        if limit is not None:  # visits or units a year: the line is denied past the limit
            units = Decimal(1) if limit[1] == "visit" else \
                amount({"value": (line.item.get("quantity") or {}).get("value", 1)})
            used = done.units.get(line.category, ZERO)
            if used + units > limit[0]:
                line.denied.append("benefit-limit")
                continue
            done.units[line.category] = used + units
            line.units = units
        room = max(ZERO, min(rules.oop_max - done.oop, rules.family_oop_max - done.family_oop))
        if line.category in copay_left:
            line.copay = min(copay_left[line.category], line.allowed, room)
            copay_left[line.category] -= line.copay
        else:
            line.deductible = max(ZERO, min(line.allowed, rules.deductible - done.deductible,
                                            rules.family_deductible - done.family_deductible,
                                            room))
            rest = line.allowed - line.deductible
            line.coinsurance = min(cents(rest * coinsurance), room - line.deductible)
        for name, value in (("deductible", line.deductible), ("copay", line.copay),
                            ("coinsurance", line.coinsurance)):
            if value > 0:
                line.reduced.append(name)
        done.deductible += line.deductible
        done.family_deductible += line.deductible
        done.oop += line.member
        done.family_oop += line.member


def coordination(session: Session, claim: Adjudication) -> None:
    """Coordination of benefits: when the patient has a secondary Coverage (``order`` 2,
    active on the service date, on a plan this payer knows), the secondary prices each
    line and applies its own cost shares against its own family ledger, as if it were
    primary; it then pays the lesser of that and what the member owes after the primary
    (``Line.secondary``). Its view is ``claim.secondary`` (a ClaimResponse of its own)."""
    if claim.rules is None or claim.coverage is None or claim.outcome != "complete" or \
            claim.claim_denied or claim.claim.get("use", "claim") != "claim":
        return
    day = claim.service_date[:10]
    others = _active_coverages(session, claim)
    secondary = next((c for c in others if c.get("order") == 2 and
                      c.get("id") != claim.coverage.get("id") and
                      in_force(c.get("period"), day)), None)
    if secondary is None:
        return
    view = Adjudication(claim=claim.claim, service_date=claim.service_date,
                        patient=claim.patient, order=claim.order, claim_ref=claim.claim_ref,
                        coverage=secondary, cache=claim.cache,
                        lines=[replace(line, reduced=[], deductible=ZERO, copay=ZERO,
                                       coinsurance=ZERO, units=ZERO, secondary=ZERO,
                                       cap=None, denied=list(line.denied))
                               for line in claim.lines])
    eligibility(session, view)
    if view.rules is None or view.claim_denied:
        return  # a secondary that covers nothing that day pays nothing
    pricing(session, view)
    cost_sharing(session, view)
    for line, other in zip(claim.lines, view.lines, strict=True):
        other.cap = line.member if not line.denied else ZERO
        line.secondary = other.benefit
    claim.secondary = view


PIPELINE: list[Step] = [front_end, eligibility, duplicates, pricing, benefits, coding_edits,
                        necessity, review_decision, cost_sharing, coordination]


def adjudicate(session: Session, resource: dict[str, Any], *, claim_ref: str | None = None,
               order: str | None = None, review: str | None = None,
               cache: dict[Any, Any] | None = None) -> Adjudication:
    """Run every step of :data:`PIPELINE` over one claim (``order``: its ledger place,
    kept when a claim is adjudicated again; ``cache``: what the claims of one batch share,
    such as the plan's rules, which cannot change within it)."""
    date = str((resource.get("billablePeriod") or {}).get("start") or "")
    lines = lines_of(resource, date)
    if not date and lines:
        date = min(line.service_date for line in lines)
    claim = Adjudication(claim=resource, lines=lines, service_date=date,
                         patient=str((resource.get("patient") or {}).get("reference") or ""),
                         order=order or f"{date[:10]}|{time.time_ns():020d}",
                         claim_ref=claim_ref, review=review,
                         cache={} if cache is None else cache)
    for step in PIPELINE:
        step(session, claim)
    return claim


