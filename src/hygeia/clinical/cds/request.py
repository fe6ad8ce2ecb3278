"""Validating a hook request as CDS Hooks 2.0 defines it: a malformed one is a 400.

Limits: the body is a JSON object (the mount's body limit bounds its size);
``hook`` must be the service's hook, ``hookInstance`` a non-empty string of at
most 128 characters, ``context`` an object with the fields its hook requires,
``prefetch`` (optional) an object whose values are resources or null.
"""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest

MAX_TEXT = 128
# the context fields each hook requires (CDS Hooks 2.0 hook definitions)
REQUIRED_CONTEXT = {
    "patient-view": ("userId", "patientId"),
    "order-select": ("userId", "patientId", "selections", "draftOrders"),
    "order-sign": ("userId", "patientId", "draftOrders"),
}


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The request body is not JSON: {error}.", expression="body") \
            from None
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.", expression="body")
    return parsed


def check_request(request: dict[str, Any], hook: str) -> None:
    """Refuse what is not a valid call of ``hook`` (BadRequest naming the field)."""
    if request.get("hook") != hook:
        raise BadRequest(f"This service answers the hook {hook!r}, not "
                         f"{str(request.get('hook'))[:MAX_TEXT]!r}.", expression="hook")
    instance = request.get("hookInstance")
    if not isinstance(instance, str) or not instance or len(instance) > MAX_TEXT:
        raise BadRequest(f"hookInstance must be a non-empty string of at most {MAX_TEXT} "
                         "characters (a UUID).", expression="hookInstance")
    context = request.get("context")
    if not isinstance(context, dict):
        raise BadRequest("context must be an object.", expression="context")
    for name in REQUIRED_CONTEXT.get(hook, ()):
        if name not in context:
            raise BadRequest(f"The {hook} hook's context must have {name}.",
                             expression=f"context.{name}")
    for name in ("userId", "patientId", "encounterId"):
        value = context.get(name)
        if value is not None and (not isinstance(value, str) or not value or
                                  len(value) > MAX_TEXT):
            raise BadRequest(f"context.{name} must be a non-empty string of at most "
                             f"{MAX_TEXT} characters.", expression=f"context.{name}")
    prefetch = request.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise BadRequest("prefetch must be an object.", expression="prefetch")
    for key, value in (prefetch or {}).items():
        if value is not None and not (isinstance(value, dict) and "resourceType" in value):
            raise BadRequest(f"prefetch.{key} must be a FHIR resource or null.",
                             expression=f"prefetch.{key}")
    for name in ("fhirServer", "fhirAuthorization"):
        if name in request and not isinstance(request[name], str | dict):
            raise BadRequest(f"{name} is malformed.", expression=name)
