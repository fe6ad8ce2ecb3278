"""``X-Provenance``: a Provenance sent with a write is stored with it, pointing at it.

The header carries a Provenance resource as JSON (the convention of the FHIR
spec's provenance page, as HAPI FHIR implements it).  The server sets
``target`` to the version-specific reference of what the write stored and
``recorded`` to now, validates the result and stores it in the write's own
transaction: both commit, or neither.  A header that is not JSON, not a
Provenance, or not valid once completed is refused with 400, and the write
rolls back with it.  A write that stored nothing (a conditional create that
found its match, a conditional delete without one) stores no Provenance.
"""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.fhir.datetime import format_instant, now_us
from hygeia.fhir.outcome import BadRequest, Issue
from hygeia.fhir.validation import validate
from hygeia.server.auth.guard import guarded
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.rest import write
from hygeia.server.rest.router import Route
from hygeia.store import Session

HEADER = "X-Provenance"


def provenance_for(header: str, target: str, recorded: int) -> dict[str, Any]:
    """The Provenance to store for ``header``, aimed at ``target`` (400 when unusable).

    >>> provenance_for('{"resourceType": "Provenance", "agent": [{"who": '
    ...                '{"display": "Dr A"}}]}', "Patient/1/_history/2", 0)["target"]
    [{'reference': 'Patient/1/_history/2'}]
    """
    try:
        resource = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The {HEADER} header is not valid JSON: {error}.",
                         code="structure", expression=HEADER) from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Provenance":
        raise BadRequest(f"The {HEADER} header must hold a Provenance resource.",
                         expression=HEADER)
    resource.pop("id", None)  # the server names what it stores
    resource.pop("meta", None)
    resource["target"] = [{"reference": target}]
    resource["recorded"] = format_instant(recorded)
    issues = validate(resource, "Provenance")
    if issues:
        raise BadRequest(issues=[Issue("invalid", f"The {HEADER} header is not a valid "
                                       "Provenance; the write was not stored.", HEADER),
                                 *issues])
    return resource


def store_provenance(session: Session, route: Route, request: FhirRequest,
                     response: FhirResponse) -> list[str]:
    """Store the request's ``X-Provenance`` (if any) in the write's transaction.

    Returns the stored Provenance's version-specific reference (empty when
    there was no header or nothing was written).  Stored through the token's
    scopes like any create.
    """
    if request.provenance is None:
        return []
    target = written_version(route, request, response)
    if target is None:
        return []
    resource = provenance_for(request.provenance, target, now_us())
    stored = write.create(guarded(session, request.access, "create"), "Provenance", resource,
                          validated=True)
    assert stored.location is not None
    return [stored.location]


def written_version(route: Route, request: FhirRequest, response: FhirResponse) -> str | None:
    """``Type/id/_history/v`` of the version a write stored; None when it stored none."""
    if route.interaction == "create" and response.status != 201:
        return None  # a conditional create that matched an existing resource
    if response.location:
        return response.location.removeprefix(request.base_url)
    if route.resource_type and route.id and response.version is not None:
        return f"{route.resource_type}/{route.id}/_history/{response.version}"
    return None
