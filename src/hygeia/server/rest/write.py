"""Write interactions: create, update, delete, patch and their conditional forms.

Each function takes an open transaction session and returns a FhirResponse;
it never commits (the caller owns the transaction), so the same code serves a
single HTTP request and one entry of an atomic transaction Bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.fhir.datetime import now_us
from hygeia.fhir.outcome import (
    BadRequest,
    FhirError,
    Gone,
    Issue,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    UnsupportedMediaType,
)
from hygeia.fhir.patch import PatchLimits, apply_fhirpath_patch, apply_json_patch
from hygeia.fhir.resources import check_id, new_id, stamp
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.query import parse_criteria
from hygeia.fhir.search.rows import IndexRows
from hygeia.fhir.validation import validate
from hygeia.server.context import FhirResponse, Settings, parse_etag
from hygeia.server.rest.router import SERVER_WRITTEN_TYPES
from hygeia.store import Head, Session, StoredVersion

# Types the server would store without doing what storing them asks for. Refused (422)
# on every write path until the feature exists; delete an entry here to lift it.
NOT_HONOURED_YET: dict[str, str] = {}  # none now: Subscriptions are honoured (issue 16)


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a conditional criteria string matched: zero or one id (many is an error)."""

    id: str | None


def require_resource(body: Any, resource_type: str) -> dict[str, Any]:
    """The body must be a JSON object of the type named in the URL."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a FHIR resource (a JSON object).",
                         code="structure")
    actual = body.get("resourceType")
    if actual != resource_type:
        raise BadRequest(f"The body is a {actual!r} but the URL names {resource_type}.",
                         expression="resourceType", code="invalid")
    return body


def validate_resource(resource: dict[str, Any], resource_type: str) -> None:
    issues = validate(resource, resource_type)
    if issues:
        count = len(issues)
        raise Unprocessable(issues=[Issue("processing", f"{resource_type} failed validation with "
                                      f"{count} issue{'s' if count > 1 else ''}.", resource_type),
                                    *issues])


def resolve_criteria(session: Session, resource_type: str, criteria: str,
                     *, lock: bool = False) -> Resolved:
    """Find the single resource matching conditional criteria (412 if several)."""
    query = parse_criteria(resource_type, criteria, session.registry)
    query.count = 2
    if lock:
        session.lock(f"{resource_type}?{criteria}")
    ids = session.find_ids(query)
    if len(ids) > 1:
        raise PreconditionFailed(
            f"The criteria '{resource_type}?{criteria}' match more than one resource; "
            "make them more selective.", expression="criteria")
    return Resolved(ids[0] if ids else None)


def _write(session: Session, resource_type: str, id: str, resource: dict[str, Any] | None,
           previous: StoredVersion | Head | None, method: str) -> StoredVersion:
    if resource_type in SERVER_WRITTEN_TYPES:  # the router refuses them; this is the backstop
        raise MethodNotAllowed(f"{resource_type} is written by the server alone.",
                               expression=resource_type)
    if resource is not None:
        refuse_not_honoured(resource_type)
    version = 1 if previous is None else previous.version + 1
    last_updated = now_us()
    if previous is not None and last_updated <= previous.last_updated:
        last_updated = previous.last_updated + 1  # keep versions strictly ordered in time
    content = None if resource is None else stamp(resource, id, version, last_updated)
    stored = StoredVersion(resource_type, id, version, last_updated, resource is None, content,
                           method, 0)
    session.put(stored, _index_rows(session, resource, content))
    if session.on_write is not None:
        session.on_write(stored, resource)
    return stored


def refuse_not_honoured(resource_type: str) -> None:
    """422 for a create, update or patch of a type in :data:`NOT_HONOURED_YET` (a
    delete still works, so one stored before the refusal can be removed)."""
    reason = NOT_HONOURED_YET.get(resource_type)
    if reason is not None:
        raise Unprocessable(f"{resource_type} is not supported yet: {reason}",
                            expression=resource_type, code="not-supported")


def _index_rows(session: Session, resource: dict[str, Any] | None, content: bytes | None
                ) -> IndexRows | Callable[[], IndexRows]:
    if resource is None or content is None:
        return IndexRows()
    if session.rows_later is not None:
        return session.rows_later(resource, content)
    return index_resource(resource, session.registry)


def _written(stored: StoredVersion, status: int, base_url: str) -> FhirResponse:
    return FhirResponse(
        status,
        raw=stored.content,
        location=f"{base_url}{stored.resource_type}/{stored.id}/_history/{stored.version}",
        version=stored.version,
        last_updated=stored.last_updated,
    )


def create(session: Session, resource_type: str, body: Any, *, base_url: str = "",
           if_none_exist: str | None = None, id: str | None = None,
           validated: bool = False) -> FhirResponse:
    """Create with a server-assigned id (any id in the body is ignored, per the spec).

    With ``if_none_exist`` the create is conditional and race-safe: the
    criteria are locked for the rest of the transaction, so concurrent
    identical requests create exactly one resource.
    """
    resource = require_resource(body, resource_type)
    if not validated:
        validate_resource(resource, resource_type)
    if if_none_exist:
        existing = resolve_criteria(session, resource_type, if_none_exist, lock=True)
        if existing.id is not None:
            current = session.current(resource_type, existing.id)
            assert current is not None
            return _written(current, 200, base_url)
    stored = _write(session, resource_type, id or new_id(), resource, None, "POST")
    return _written(stored, 201, base_url)


def check_if_match(if_match: str | None, current: StoredVersion | None, where: str) -> None:
    """Version-aware updates: If-Match must name the current version (412 otherwise)."""
    if if_match is None:
        return
    wanted = parse_etag(if_match)
    if wanted is None:
        raise BadRequest(f"If-Match '{if_match}' is not a version ETag like W/\"3\".",
                         expression="If-Match")
    if current is None or current.deleted or current.version != wanted:
        have = "does not exist" if current is None or current.deleted else \
            f"is at version {current.version}"
        raise PreconditionFailed(f"{where} {have}, not version {wanted} named by If-Match.",
                                 expression="If-Match")


def update(session: Session, resource_type: str, id: str, body: Any, *, base_url: str = "",
           if_match: str | None = None, validated: bool = False) -> FhirResponse:
    """Update, or create with the client's id when it does not exist (update-as-create)."""
    check_id(id)
    resource = require_resource(body, resource_type)
    if resource.get("id") != id:
        raise BadRequest(f"The body's id {resource.get('id')!r} must equal the id in the URL "
                         f"({id}).", expression=f"{resource_type}.id")
    if not validated:
        validate_resource(resource, resource_type)
    current = session.current(resource_type, id, for_update=True)
    check_if_match(if_match, current, f"{resource_type}/{id}")
    stored = _write(session, resource_type, id, resource, current, "PUT")
    status = 201 if current is None or current.deleted else 200
    return _written(stored, status, base_url)


def update_all(session: Session, resource_type: str, resources: list[dict[str, Any]], *,
               validated: bool = False) -> list[StoredVersion | FhirError]:
    """:func:`update` for many resources of one type (each body's ``id`` naming it, no two
    alike) with their current versions locked and read in one round trip
    (``Session.heads``) instead of one each: what each became, or the error that
    refused it (the others are written all the same)."""
    ids = [str(resource.get("id")) for resource in resources]
    if len(set(ids)) != len(ids):
        raise ValueError("update_all needs distinct ids")
    results: list[StoredVersion | FhirError] = []
    heads = session.heads([(resource_type, id) for id in ids], for_update=True)
    for id, resource in zip(ids, resources, strict=True):
        try:
            check_id(id)
            require_resource(resource, resource_type)
            if not validated:
                validate_resource(resource, resource_type)
            results.append(_write(session, resource_type, id, resource,
                                  heads.get((resource_type, id)), "PUT"))
        except FhirError as error:
            results.append(error)
    return results


def conditional_update(session: Session, resource_type: str, criteria: str, body: Any, *,
                       base_url: str = "", if_match: str | None = None,
                       validated: bool = False) -> FhirResponse:
    """PUT Type?criteria: no match creates, one match updates it, several is 412."""
    resource = require_resource(body, resource_type)
    match = resolve_criteria(session, resource_type, criteria, lock=True)
    body_id = resource.get("id")
    if match.id is not None and body_id is not None and body_id != match.id:
        raise BadRequest(f"The body's id {body_id!r} differs from the matching resource "
                         f"{resource_type}/{match.id}.", expression=f"{resource_type}.id")
    target = match.id or body_id or new_id()
    resource["id"] = target
    return update(session, resource_type, target, resource, base_url=base_url,
                  if_match=if_match, validated=validated)


def delete(session: Session, resource_type: str, id: str, *,
           if_match: str | None = None) -> FhirResponse:
    """Logical delete: a new version marks the resource deleted (it reads as 410 Gone)."""
    current = session.current(resource_type, id, for_update=True)
    if current is None:
        raise NotFound(f"{resource_type}/{id} does not exist.", expression=resource_type)
    check_if_match(if_match, current, f"{resource_type}/{id}")
    if current.deleted:
        return FhirResponse(204, version=current.version, last_updated=current.last_updated)
    stored = _write(session, resource_type, id, None, current, "DELETE")
    return FhirResponse(204, version=stored.version, last_updated=stored.last_updated)


def conditional_delete(session: Session, resource_type: str, criteria: str) -> FhirResponse:
    """DELETE Type?criteria: deletes the single match; several matches are refused (412)."""
    match = resolve_criteria(session, resource_type, criteria, lock=True)
    if match.id is None:
        return FhirResponse(204)
    return delete(session, resource_type, match.id)


def patch(session: Session, resource_type: str, id: str, body: Any, *, content_type: str,
          base_url: str = "", if_match: str | None = None,
          limits: PatchLimits | None = None) -> FhirResponse:
    """Apply a JSON Patch or FHIRPath Patch to the current version, validate, store.

    ``limits`` bound the patched resource's size and the patch's operations
    (the server passes its body limit): a patch is refused with 422 before it
    builds a resource larger than a client could send whole.
    """
    fhirpath_patch = isinstance(body, dict) and body.get("resourceType") == "Parameters"
    if "json-patch" not in content_type and not ("json" in content_type and fhirpath_patch):
        raise UnsupportedMediaType(
            f"PATCH bodies must be application/json-patch+json (JSON Patch) or "
            f"application/fhir+json Parameters (FHIRPath Patch), not {content_type}.",
            expression="Content-Type")
    current = session.current(resource_type, id, for_update=True)
    if current is None:
        raise NotFound(f"{resource_type}/{id} does not exist.", expression=resource_type)
    if current.deleted:
        raise Gone(f"{resource_type}/{id} was deleted.", expression=resource_type)
    check_if_match(if_match, current, f"{resource_type}/{id}")
    original = orjson.loads(current.content or b"{}")
    if "json-patch" in content_type:
        patched = apply_json_patch(original, body, limits)
    else:
        patched = apply_fhirpath_patch(original, body, limits)
    if patched.get("resourceType") != resource_type or patched.get("id") != id:
        raise Unprocessable("A patch must not change resourceType or id.",
                            expression=f"{resource_type}.id")
    validate_resource(patched, resource_type)
    stored = _write(session, resource_type, id, patched, current, "PATCH")
    return _written(stored, 200, base_url)


def patch_limits(settings: Settings) -> PatchLimits:
    """A patched resource may be no larger than a body the server would accept."""
    return PatchLimits(max_bytes=settings.max_body_bytes,
                       max_operations=settings.max_patch_operations)


def conditional_patch(session: Session, resource_type: str, criteria: str, body: Any, *,
                      content_type: str, base_url: str = "", if_match: str | None = None,
                      limits: PatchLimits | None = None) -> FhirResponse:
    match = resolve_criteria(session, resource_type, criteria, lock=True)
    if match.id is None:
        raise NotFound(f"No {resource_type} matches '{criteria}'.", expression="criteria")
    return patch(session, resource_type, match.id, body, content_type=content_type,
                 base_url=base_url, if_match=if_match, limits=limits)
