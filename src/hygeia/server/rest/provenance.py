"""``X-Provenance``: a Provenance sent with a write is stored with it, pointing at it.

The header carries a Provenance resource as JSON (the convention of the FHIR
spec's provenance page, as HAPI FHIR implements it).  The server sets
``target`` to the version-specific reference of what the write stored and
``recorded`` to the write's time, validates the result and stores it in the
write's own transaction: both commit, or neither. It is a write hook
(:class:`RequestProvenance`) fed by the request through a context variable.
A header that is not JSON, not a Provenance, or not valid once completed is
refused with 400, and the write rolls back with it. A write that stored nothing
(a conditional create that found its match, a conditional delete without one)
stores no Provenance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from hygeia.fhir.datetime import format_instant
from hygeia.fhir.outcome import BadRequest, Issue
from hygeia.fhir.validation import validate
from hygeia.server.auth.guard import guarded
from hygeia.server.context import FhirRequest
from hygeia.server.rest import write

if TYPE_CHECKING:
    from hygeia.server.auth.access import Access
    from hygeia.store import Session, StoredVersion

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


@dataclass(slots=True)
class _Pending:
    """The X-Provenance of the request this thread is handling, until it is stored."""

    header: str
    resource_type: str | None  # what the request writes (its AuditEvent is not a target)
    access: Access | None
    stored: list[str]
    storing: bool = False


_PENDING: ContextVar[_Pending | None] = ContextVar("hygeia_x_provenance", default=None)


@contextmanager
def request_provenance(request: FhirRequest, resource_type: str | None) -> Iterator[list[str]]:
    """Within the block, the request's ``X-Provenance`` (if any) is stored by
    :class:`RequestProvenance` with the version the write stores. Yields the list the
    stored Provenance's version-specific reference lands in (for the audit trail)."""
    stored: list[str] = []
    if request.provenance is None:
        yield stored
        return
    token = _PENDING.set(_Pending(request.provenance, resource_type, request.access, stored))
    try:
        yield stored
    finally:
        _PENDING.reset(token)


class RequestProvenance:
    """``X-Provenance`` as a write hook: the first version a REST write stores gets the
    request's Provenance, in the same transaction, through the client's scopes.

    The header belongs to one request, so the hook finds it in a context variable set
    around that request's write (:func:`request_provenance`); on every other write path
    (the loader, ``$import``, Bundles) the variable is unset and the hook costs one
    lookup. A write that stores no version (a conditional create that matched, a
    conditional delete that found nothing) never calls it, so stores no Provenance.
    """

    types = None  # whichever type the request writes

    def written(self, session: Session, version: StoredVersion) -> None:
        pending = _PENDING.get()
        if pending is None or pending.stored or pending.storing or \
                version.resource_type != pending.resource_type:
            return  # no header, already stored, the Provenance itself, or not the target
        pending.storing = True
        try:
            target = f"{version.resource_type}/{version.id}/_history/{version.version}"
            resource = provenance_for(pending.header, target, version.last_updated)
            stored = write.create(guarded(session, pending.access, "create"), "Provenance",
                                  resource, validated=True)
        finally:
            pending.storing = False
        assert stored.location is not None
        pending.stored.append(stored.location)
