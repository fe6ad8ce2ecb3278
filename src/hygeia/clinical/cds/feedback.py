"""Feedback (CDS Hooks 2.0 ``POST /cds-services/{id}/feedback``), stored as FHIR ``Basic``.

Each feedback item becomes a Basic resource coded
``urn:hygeia:codesystem:cds-feedback|{service id}``, its ``identifier`` the card's
uuid, the outcome and its details as extensions; so feedback is searched like any
data: ``Basic?code=urn:hygeia:codesystem:cds-feedback|news2``. At most
``MAX_ITEMS`` items per request.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.resources import new_id
from hygeia.server.extensions import Host
from hygeia.server.rest import write

FEEDBACK_SYSTEM = "urn:hygeia:codesystem:cds-feedback"
CARD_SYSTEM = "urn:hygeia:cds-card"
EXTENSION = "urn:hygeia:extension:cds-feedback-"
OUTCOMES = ("accepted", "overridden")
MAX_ITEMS = 100
MAX_TEXT = 1024


def store_feedback(host: Host, service: str, request: dict[str, Any]) -> list[str]:
    """Validate every item, then store them all in one transaction; their Basic ids."""
    items = request.get("feedback")
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise BadRequest(f"feedback must be a list of 1 to {MAX_ITEMS} items.",
                         expression="feedback")
    resources = [_basic(service, item, index) for index, item in enumerate(items)]
    ids = [new_id() for _ in resources]
    with host.transaction() as session:
        for id, resource in zip(ids, resources, strict=True):
            write.create(session, "Basic", resource, id=id)
    return ids


def _text(item: dict[str, Any], name: str, where: str, required: bool = True) -> str | None:
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise BadRequest(f"{where}.{name} must be a non-empty string of at most {MAX_TEXT} "
                         "characters.", expression=f"{where}.{name}")
    return value


def _basic(service: str, item: Any, index: int) -> dict[str, Any]:
    where = f"feedback[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object.", expression=where)
    card = _text(item, "card", where)
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise BadRequest(f"{where}.outcome must be accepted or overridden.",
                         expression=f"{where}.outcome")
    timestamp = _text(item, "outcomeTimestamp", where)
    extensions: list[dict[str, Any]] = [
        {"url": EXTENSION + "outcome", "valueCode": outcome},
        {"url": EXTENSION + "outcome-timestamp", "valueString": timestamp}]
    for accepted in item.get("acceptedSuggestions") or []:
        suggestion = _text(accepted if isinstance(accepted, dict) else {}, "id",
                           f"{where}.acceptedSuggestions")
        extensions.append({"url": EXTENSION + "accepted-suggestion",
                           "valueString": suggestion})
    override = item.get("overrideReason")
    if isinstance(override, dict):
        reason = override.get("reason")
        if isinstance(reason, dict) and isinstance(reason.get("code"), str):
            extensions.append({"url": EXTENSION + "override-reason", "valueCoding": {
                key: str(reason[key])[:MAX_TEXT] for key in ("system", "code", "display")
                if isinstance(reason.get(key), str)}})
        comment = _text(override, "userComment", f"{where}.overrideReason", required=False)
        if comment:
            extensions.append({"url": EXTENSION + "user-comment", "valueString": comment})
    return {"resourceType": "Basic",
            "code": {"coding": [{"system": FEEDBACK_SYSTEM, "code": service}]},
            "identifier": [{"system": CARD_SYSTEM, "value": card}],
            "extension": extensions}
