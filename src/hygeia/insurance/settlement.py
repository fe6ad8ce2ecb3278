"""Adjudicate and record: the ClaimResponse (a ledger entry), its EOB or review Task, and
what a void or an out-of-order claim changes for the member's later claims.

A void (the Claim updated to ``status = cancelled``, or a corrected claim whose
``related`` names it as ``prior``) cancels the claim's ClaimResponse and EOB, which
takes its amounts out of the ledger, then adjudicates again, in ledger order, every
later entry of the same family and benefit year, in the same transaction: the
update returns after they are settled again. A claim that a secondary coverage
paid is filed in two families' ledgers (the primary's and the secondary's): a
void settles again the later claims of both, and of any further family whose
balances those changed (:func:`readjudicate_after`).
"""

from __future__ import annotations

import heapq
from typing import Any

import orjson

from hygeia.fhir.outcome import NotFound, Unprocessable
from hygeia.insurance.codes import COB_ROLE
from hygeia.insurance.ledger import effect, entries_tagged, order_of, tag_of
from hygeia.insurance.model import Adjudication
from hygeia.insurance.records import read, search
from hygeia.insurance.responses import claim_response, explanation
from hygeia.insurance.steps import adjudicate
from hygeia.server.rest import write
from hygeia.store import Session, StoredVersion


def store(session: Session, resource: dict[str, Any], *, validated: bool = False) -> str:
    """Store a resource (update with its id, else create); its relative reference.
    ``validated``: the resource was validated already, or is one the pillar builds
    (ClaimResponse, EOB: tests/insurance validate every one they see)."""
    kind = str(resource.get("resourceType"))
    if resource.get("id"):
        write.update(session, kind, str(resource["id"]), resource, validated=validated)
        return f"{kind}/{resource['id']}"
    response = write.create(session, kind, resource, validated=validated)
    assert response.location is not None
    return "/".join(response.location.split("/")[:2])


def settle(session: Session, claim: dict[str, Any], claim_ref: str, *,
           order: str | None = None, response_id: str | None = None,
           review: str | None = None, checked: Adjudication | None = None) -> dict[str, Any]:
    """Adjudicate a stored claim and record the result (a new or a revised ClaimResponse);
    ``checked`` is a first submission's adjudication, run before the claim had an id."""
    return settle_views(session, claim, claim_ref, order=order, response_id=response_id,
                        review=review, checked=checked)[0]


def settle_views(session: Session, claim: dict[str, Any], claim_ref: str, *,
                 order: str | None = None, response_id: str | None = None,
                 review: str | None = None, checked: Adjudication | None = None,
                 earlier: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """:func:`settle`, answering the primary's ClaimResponse and, when a secondary coverage
    pays, the secondary's (``earlier``: the claim's active ClaimResponses when the caller
    has just read them)."""
    adjudication = checked or adjudicate(session, claim, claim_ref=claim_ref, order=order,
                                         review=review)
    response = claim_response(adjudication, claim_ref)
    if response_id:
        response["id"] = response_id
    response_ref = store(session, response, validated=True)
    response["id"] = response_ref.split("/")[1]
    # a claim stored in this request (``checked``) has no EOB yet
    eobs = [] if checked is not None else \
        search(session, "ExplanationOfBenefit", [("claim", claim_ref)])
    views = [response]
    if checked is None and earlier is None:
        earlier = [r for r in search(session, "ClaimResponse", [("request", claim_ref)])
                   if r.get("status") == "active"]
    second = _settle_secondary(session, adjudication, claim_ref, [
        r for r in earlier or [] if is_secondary(r) and r.get("status") == "active"])
    if second is not None:
        views.append(second)
    if adjudication.outcome == "complete":
        eob = explanation(adjudication, response, claim_ref, response_ref)
        if eobs:
            eob["id"] = eobs[0]["id"]
        store(session, eob, validated=True)
    else:
        for eob in eobs:
            store(session, {**eob, "status": "cancelled"})
        if response_id is None and adjudication.outcome == "queued":
            store(session, {"resourceType": "Task", "status": "requested", "intent": "order",
                            "code": {"coding": [REVIEW_TASK], "text": "review pended claim"},
                            "description": response["disposition"],
                            "focus": {"reference": claim_ref},
                            "for": {"reference": adjudication.patient}})
    return views


def is_secondary(response: dict[str, Any]) -> bool:
    """Whether a ClaimResponse is a secondary coverage's view (coordination of benefits)."""
    return any(e.get("url") == COB_ROLE for e in response.get("extension") or [])


def _settle_secondary(session: Session, adjudication: Adjudication, claim_ref: str,
                      earlier: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Record the secondary coverage's ClaimResponse (new, or revising ``earlier``'s, or
    cancelling them when the claim no longer has a secondary that pays)."""
    view = adjudication.secondary
    if view is None:
        for response in earlier:
            store(session, {**response, "status": "cancelled"}, validated=True)
        return None
    response = claim_response(view, claim_ref, secondary=True)
    if earlier:
        response["id"] = earlier[0]["id"]
    response["id"] = store(session, response, validated=True).split("/")[1]
    return response


def starts_of(responses: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(ledger, order) of each claim entry among ``responses``: where the later claims of
    each family they are filed in must be adjudicated again from."""
    return [(tag, order_of(r)) for r in responses
            if r.get("use", "claim") == "claim" and (tag := tag_of(r)) is not None]


def readjudicate_after(session: Session, starts: list[tuple[str, str]],
                       ledgers: dict[str, list[dict[str, Any]]] | None = None) -> int:
    """Settle again, in ledger order, every active adjudicated entry after ``order`` of
    each ``(ledger tag code, order)`` in ``starts``; how many claims were settled again.

    A claim settled again may change the balances of each family it is filed in: its
    primary coverage's and, with coordination of benefits, its secondary's. Where an
    entry's :func:`ledger.effect` changes, that family's entries after it are settled
    again too. Claims are taken in global ledger order, so each is settled at most once
    and after every earlier entry it depends on.
    ``ledgers``: a family's entries (by tag code) when the caller has just read them
    (under the family's lock, so they are current)."""
    known = dict(ledgers or {})
    reached: dict[str, str] = {}  # ledger -> the order after which its claims are queued
    queue: list[tuple[str, str]] = []  # (order, claim reference), a heap
    queued: set[str] = set()

    def later(tag: str, after: str) -> None:
        if tag in reached and reached[tag] <= after:
            return
        reached[tag] = after
        for entry in known.pop(tag) if tag in known else entries_tagged(session, tag):
            reference = str((entry.get("request") or {}).get("reference") or "")
            if order_of(entry) > after and entry.get("outcome") == "complete" and \
                    reference and reference not in queued:
                queued.add(reference)
                heapq.heappush(queue, (order_of(entry), reference))

    for tag, after in starts:
        later(tag, after)
    count = 0
    while queue:
        order, reference = heapq.heappop(queue)
        claim = read(session, reference)
        if claim is None or claim.get("status") == "cancelled":
            continue
        before = [r for r in search(session, "ClaimResponse", [("request", reference)])
                  if r.get("status") == "active"]
        primary = next((r for r in before if not is_secondary(r)), None)
        now = settle_views(session, claim, reference, order=order, earlier=before,
                           response_id=primary["id"] if primary else None)
        count += 1
        old = {tag_of(r): effect(r) for r in before}
        new = {tag_of(r): effect(r) for r in now}
        for changed in sorted(key for key in old.keys() | new.keys()
                              if key is not None and old.get(key) != new.get(key)):
            later(changed, order)
    return count


def void(session: Session, claim_ref: str, claim: dict[str, Any]) -> None:
    """Cancel the claim's ledger entries (its primary's and its secondary's) and EOBs,
    then settle again the later claims of every family they were filed in."""
    responses = [r for r in search(session, "ClaimResponse", [("request", claim_ref)])
                 if r.get("status") == "active"]
    for response in responses:
        store(session, {**response, "status": "cancelled"})
    for eob in search(session, "ExplanationOfBenefit", [("claim", claim_ref)]):
        store(session, {**eob, "status": "cancelled"})
    readjudicate_after(session, starts_of(responses))


def pended_of(session: Session, claim_ref: str) -> list[dict[str, Any]]:
    """The claim's active ClaimResponses that wait for a reviewer."""
    return [r for r in search(session, "ClaimResponse", [("request", claim_ref)])
            if r.get("status") == "active" and r.get("outcome") == "queued"]


def review(session: Session, claim_ref: str, decision: str, *,
           complete_task: bool = True) -> dict[str, Any]:
    """A reviewer's decision on a pended claim or preauthorization: settle it again with
    the decision, complete its review Task, and settle the family's later claims."""
    claim = read(session, claim_ref)
    pended = pended_of(session, claim_ref)
    if claim is None or not pended:
        raise NotFound(f"{claim_ref} has no pended ClaimResponse to review.",
                       expression="claim")
    order = order_of(pended[0])
    views = settle_views(session, claim, claim_ref, order=order,
                         response_id=pended[0]["id"], review=decision)
    for task in search(session, "Task", [("focus", claim_ref), ("status", "requested")]
                       ) if complete_task else []:
        store(session, {**task, "status": "completed",
                        "businessStatus": {"coding": [{"system": DECISION_SYSTEM,
                                                       "code": decision}]}})
    readjudicate_after(session, starts_of(views))
    return views[0]


class ClaimVoids:
    """The write hook that turns an update to ``status = cancelled`` into a void."""

    types = frozenset({"Claim"})

    def written(self, session: Session, version: StoredVersion) -> None:
        if version.deleted or not version.content or version.version < 2 or \
                b'"cancelled"' not in version.content:
            return
        claim = orjson.loads(version.content)
        before = session.version("Claim", version.id, version.version - 1)
        if claim.get("status") != "cancelled" or before is None or before.content is None or \
                orjson.loads(before.content).get("status") == "cancelled":
            return
        void(session, f"Claim/{version.id}", claim)


FINANCIAL_TASK = "http://terminology.hl7.org/CodeSystem/financialtaskcode"
REVIEW_TASK = {"system": "urn:hygeia:CodeSystem:insurance-task", "code": "review"}
DECISION_SYSTEM = "urn:hygeia:CodeSystem:review-decision"  # approve | deny


class CancelTasks:
    """The write hook for Tasks focused on a Claim. A Task ``financialtaskcode|cancel``
    updates the claim to ``status = cancelled`` (which :class:`ClaimVoids` turns into a
    void); a review Task updated to ``completed`` with a ``businessStatus`` of
    :data:`DECISION_SYSTEM` ``approve`` or ``deny`` is the reviewer's decision."""

    types = frozenset({"Task"})

    def written(self, session: Session, version: StoredVersion) -> None:
        if version.deleted or not version.content:
            return
        if REVIEW_TASK["system"].encode() in version.content:
            self.reviewed(session, version)
            return
        if FINANCIAL_TASK.encode() not in version.content:
            return
        task = orjson.loads(version.content)
        codes = [(c.get("system"), c.get("code")) for c in
                 (task.get("code") or {}).get("coding") or []]
        focus = str((task.get("focus") or {}).get("reference") or "")
        if (FINANCIAL_TASK, "cancel") not in codes or not focus.startswith("Claim/"):
            return
        claim = read(session, focus)
        if claim is None:
            raise NotFound(f"The Task cancels {focus}, which does not exist.",
                           expression="Task.focus")
        if claim.get("status") != "cancelled":
            store(session, {**claim, "status": "cancelled"})

    @staticmethod
    def reviewed(session: Session, version: StoredVersion) -> None:
        assert version.content is not None
        task = orjson.loads(version.content)
        before = session.version("Task", version.id, version.version - 1)
        was = orjson.loads(before.content).get("status") if before and before.content else None
        if task.get("status") != "completed" or was == "completed":
            return
        decisions = [c.get("code") for c in (task.get("businessStatus") or {}).get("coding") or []
                     if c.get("system") == DECISION_SYSTEM]
        if not decisions or decisions[0] not in ("approve", "deny"):
            raise Unprocessable("A completed review Task needs a businessStatus of "
                                f"{DECISION_SYSTEM} approve or deny.",
                                expression="Task.businessStatus")
        focus = str((task.get("focus") or {}).get("reference") or "")
        if pended_of(session, focus):  # not when ``hygeia insurance review`` decided it
            review(session, focus, str(decisions[0]), complete_task=False)
