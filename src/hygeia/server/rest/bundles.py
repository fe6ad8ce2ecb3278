"""Batch and transaction Bundles (http.html#transaction).

A Bundle may have at most ``Settings.max_bundle_entries`` entries (413
beyond, before any is read): a transaction holds all its entries, their
index rows and its response in memory at once, about 20 KB per Synthea
entry.  Larger loads belong to ``$import`` or ``hygeia load``.  After a
large Bundle the worker hands the memory it freed back to the system.  The
results of its GET entries (searches, reads) may add up to at most
``Settings.max_body_bytes`` (:class:`ResultBudget`): a 60-byte search entry
can answer a thousand resources, so without it a Bundle's response could be
thousands of times larger than the Bundle.

A transaction is atomic: every entry runs in one database transaction, in the
spec's order (DELETE, POST, PUT/PATCH, GET), after ``urn:uuid:`` fullUrls and
conditional references have been resolved.  Any failure rolls the whole
Bundle back and is reported with the entry it came from.  Batch entries run
one by one, each in its own transaction, and fail independently.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import orjson

from hygeia.fhir.outcome import (
    BadRequest,
    FhirError,
    PayloadTooLarge,
    PreconditionFailed,
    Unprocessable,
    information,
)
from hygeia.fhir.references import is_conditional_reference, rewrite_references
from hygeia.fhir.resources import new_id
from hygeia.fhir.search.matcher import MatchContext, matches
from hygeia.fhir.search.query import parse_criteria
from hygeia.server.auth.access import Access
from hygeia.server.auth.guard import guarded
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.context import bundle as bundle_of
from hygeia.server.extensions import Host
from hygeia.server.memory.allocator import release_memory_soon
from hygeia.server.offload.jobs import BundleCheck
from hygeia.server.rest import write
from hygeia.server.rest.entries import (
    ORDER,
    Entry,
    located,
    parse_entries,
    parse_entry,
    validate_entries,
)
from hygeia.server.rest.integrity import IntegrityCheck
from hygeia.server.rest.router import Route
from hygeia.store import Session

if TYPE_CHECKING:
    from hygeia.server.offload.helper import Offload

log = logging.getLogger("hygeia.bundles")




class EntryAudit(Protocol):
    """What a Bundle tells the audit trail: the entries of a transaction, in its
    transaction, and the batch entries refused before they reached an interaction."""

    def in_transaction(self, session: Session, request: FhirRequest,
                       entries: list[Entry]) -> None: ...

    def refused_entry(self, request: FhirRequest, raw: Any, error: FhirError) -> None: ...


class BundleHost(Host, Protocol):
    """What batches and transactions use of the server, beyond the :class:`Host`: the
    interactions themselves (an entry is performed in the Bundle's session, a batch entry
    as a request of its own), the audit trail and the validating offload helper."""

    @property
    def audit(self) -> EntryAudit: ...

    @property
    def validator(self) -> Offload | None: ...

    def perform(self, route: Route, request: FhirRequest, session: Session) -> FhirResponse: ...

    def handle(self, request: FhirRequest) -> FhirResponse: ...

    def integrity_check(self, request: FhirRequest) -> IntegrityCheck | None: ...

    def transaction(self, *, flush_to_disk: bool = True,
                    integrity: IntegrityCheck | None = None
                    ) -> AbstractContextManager[Session]: ...

def process_bundle(host: BundleHost, request: FhirRequest) -> FhirResponse:
    bundle = request.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base needs a Bundle of type batch or transaction.",
                         expression="resourceType")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise BadRequest(f"Bundle.type must be batch or transaction, not {kind!r}.",
                         expression="Bundle.type")
    size = check_entry_count(bundle, host.settings.max_bundle_entries)
    try:
        if kind == "transaction":
            entries = process_transaction(host, request, bundle)
        else:
            entries = process_batch(host, request, bundle)
    finally:
        if size >= RELEASE_AFTER_ENTRIES:
            release_memory_soon()
    return FhirResponse(200, resource=bundle_of(f"{kind}-response", entries))


RELEASE_AFTER_ENTRIES = 1000  # smaller Bundles free too little to be worth a collection


def check_entry_count(bundle: dict[str, Any], limit: int) -> int:
    """The number of entries; 413 beyond ``limit``, pointing to the bulk paths."""
    entries = bundle.get("entry")
    count = len(entries) if isinstance(entries, list) else 0
    if count > limit:
        raise PayloadTooLarge(
            f"The Bundle has {count:,} entries; a batch or transaction may have at most "
            f"{limit:,}. Send larger sets as several Bundles, or load them with $import "
            "(bulk data import) or `hygeia load`.", expression="Bundle.entry")
    return count


# --- transaction -------------------------------------------------------------------------


def process_transaction(host: BundleHost, request: FhirRequest,
                        bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = parse_entries(bundle, host.operations)
    check = _validation(host, request, entries)
    _refuse_duplicates(entries)
    try:
        integrity = host.integrity_check(request)
        with host.transaction(integrity=integrity) as session:
            mapping = _assign_identities(session, entries, request.access)
            resolve = _reference_resolver(guarded(session, request.access, "search-type"),
                                          entries, mapping)
            for entry in entries:
                if entry.method in ("POST", "PUT") and isinstance(entry.resource, dict):
                    with located(entry):
                        entry.resource = rewrite_references(entry.resource, resolve)
            results = ResultBudget(host.settings.max_body_bytes)
            for entry in sorted(entries, key=lambda e: ORDER[e.method]):
                with located(entry):
                    entry.response = _execute(
                        host, guarded(session, request.access, entry.route.interaction),
                        request, entry)
                    results.charge(entry.method, entry.response)
            if integrity is not None:  # before the audit records: errors name the entries
                integrity.locations = _entry_locations(entries)
                integrity.verify(session)
            if check is not None:
                check.raise_if_invalid(lambda: validate_entries(entries))
            host.audit.in_transaction(session, request, entries)
    except Exception:
        if check is not None:  # invalid entries explain any failure they led to
            check.raise_if_invalid(lambda: validate_entries(entries))
        raise
    return [_response_entry(entry, request) for entry in entries]


def _entry_locations(entries: list[Entry]) -> dict[tuple[str, str], str]:
    """Where each written or deleted resource came from: ``Bundle.entry[i]``."""
    return {(entry.route.resource_type, entry.target_id or entry.route.id or ""): entry.where
            for entry in entries
            if entry.route.resource_type and (entry.target_id or entry.route.id)}


def _validation(host: BundleHost, request: FhirRequest,
                entries: list[Entry]) -> BundleCheck | None:
    """Validate now, or start validating in the offload helper and return the pending check.

    In the helper, validation overlaps the transaction's own work; the check is
    awaited before commit, so an invalid Bundle still stores nothing.
    """
    if host.validator is None or request.raw_body is None:
        validate_entries(entries)
        return None
    return BundleCheck(host.validator, request.raw_body)


def _refuse_duplicates(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.method in ("PUT", "DELETE", "PATCH") and entry.route.id:
            key = f"{entry.route.resource_type}/{entry.route.id}"
            if key in seen:
                raise BadRequest(f"{key} is the target of entries {seen[key]} and "
                                 f"{entry.index}; a transaction may change it only once.",
                                 expression=entry.where)
            seen[key] = entry.index


def _assign_identities(transaction: Session, entries: list[Entry],
                       access: Access | None) -> dict[str, str]:
    """Decide every created/updated resource's id; map fullUrls to ``Type/id``."""
    mapping: dict[str, str] = {}
    for entry in entries:
        route, resource_type = entry.route, entry.route.resource_type
        session = guarded(transaction, access, route.interaction)
        if entry.method == "POST" and route.interaction == "create":
            criteria = entry.request.get("ifNoneExist")
            found = None
            if criteria and resource_type:
                with located(entry):
                    found = write.resolve_criteria(session, resource_type, criteria,
                                                   lock=True).id
            entry.existing = found is not None
            entry.target_id = found or new_id()
        elif entry.method in ("PUT", "PATCH"):
            with located(entry):
                entry.target_id = _put_target(session, entry)
        if entry.full_url and entry.target_id and resource_type:
            mapping[entry.full_url] = f"{resource_type}/{entry.target_id}"
    return mapping


def _put_target(session: Session, entry: Entry) -> str | None:
    route = entry.route
    if route.id:
        return route.id
    if not route.criteria or not route.resource_type:
        return None
    match = write.resolve_criteria(session, route.resource_type, route.criteria, lock=True)
    body_id = entry.resource.get("id") if isinstance(entry.resource, dict) else None
    if match.id is not None and body_id is not None and body_id != match.id:
        raise BadRequest(f"The body's id {body_id!r} differs from the matching resource "
                         f"{route.resource_type}/{match.id}.", expression="resource.id")
    return match.id or body_id or new_id()


def _reference_resolver(session: Session, entries: list[Entry],
                        mapping: dict[str, str]) -> Callable[[str], str | None]:
    cache: dict[str, str] = {}

    def resolve(reference: str) -> str | None:
        if reference in mapping:
            return mapping[reference]
        if not is_conditional_reference(reference):
            return None
        if reference not in cache:
            cache[reference] = _resolve_conditional(session, entries, reference)
        return cache[reference]

    return resolve


def _resolve_conditional(session: Session, entries: list[Entry], reference: str) -> str:
    """A conditional reference must match exactly one resource, in the bundle or stored."""
    resource_type, _, criteria = reference.partition("?")
    query = parse_criteria(resource_type, criteria, session.registry)
    context = MatchContext(registry=session.registry)
    found = {f"{resource_type}/{e.target_id}" for e in entries
             if e.method in ("POST", "PUT") and e.target_id and isinstance(e.resource, dict)
             and matches(query, {**e.resource, "id": e.target_id}, context)}
    query.count = 2
    found.update(f"{resource_type}/{id}" for id in session.find_ids(query))
    if len(found) != 1:
        problem = "no resource" if not found else f"{len(found)} resources"
        raise PreconditionFailed(f"The conditional reference '{reference}' matches {problem}; "
                                 "it must match exactly one.", expression="reference")
    return found.pop()


def _execute(host: BundleHost, session: Session, request: FhirRequest,
             entry: Entry) -> FhirResponse:
    base = request.base_url
    route, resource_type = entry.route, entry.route.resource_type or ""
    if entry.method == "POST" and route.interaction == "create":
        if entry.existing:
            current = session.current(resource_type, entry.target_id or "")
            assert current is not None
            return FhirResponse(200, raw=current.content, version=current.version,
                                last_updated=current.last_updated,
                                location=f"{base}{resource_type}/{current.id}/_history/"
                                         f"{current.version}")
        return write.create(session, resource_type, entry.resource, base_url=base,
                            id=entry.target_id, validated=True)
    if entry.method == "PUT" and entry.target_id:
        entry.resource["id"] = entry.target_id
        return write.update(session, resource_type, entry.target_id, entry.resource,
                            base_url=base, if_match=entry.request.get("ifMatch"),
                            validated=True)
    if entry.method == "PATCH" and entry.target_id:
        operations, content_type = _patch_body(entry)
        return write.patch(session, resource_type, entry.target_id, operations,
                           content_type=content_type, base_url=base,
                           if_match=entry.request.get("ifMatch"),
                           limits=write.patch_limits(host.settings))
    sub = FhirRequest(entry.method, urlsplit(entry.url).path, entry.query, entry.resource,
                      base, if_match=entry.request.get("ifMatch"),
                      if_none_match=entry.request.get("ifNoneMatch"))
    return host.perform(route, sub, session)


def _patch_body(entry: Entry) -> tuple[Any, str]:
    """PATCH entries carry a FHIRPath Patch (Parameters) or a JSON Patch in a Binary."""
    binary = entry.resource
    if isinstance(binary, dict) and binary.get("resourceType") == "Parameters":
        return binary, "application/fhir+json"
    if not isinstance(binary, dict) or binary.get("resourceType") != "Binary":
        raise BadRequest("A PATCH entry's resource must be a Parameters (FHIRPath Patch) or "
                         "a Binary holding a JSON Patch.", expression="resource")
    content_type = str(binary.get("contentType", ""))
    try:
        operations = orjson.loads(base64.b64decode(binary.get("data", ""), validate=True))
    except (ValueError, orjson.JSONDecodeError):
        raise BadRequest("The PATCH entry's Binary.data is not base64-encoded JSON.",
                         expression="resource.data") from None
    return operations, content_type


def _response_entry(entry: Entry, request: FhirRequest) -> dict[str, Any]:
    response = entry.response
    assert response is not None
    result: dict[str, Any] = {}
    if entry.target_id and entry.route.resource_type:
        result["fullUrl"] = f"{request.base_url}{entry.route.resource_type}/{entry.target_id}"
    body = _entry_body(response, entry.method, request.prefer_return)
    if body is not None:
        result["resource"] = body
    result["response"] = response.bundle_response()
    return result


def _entry_body(response: FhirResponse, method: str, prefer: str | None) -> Any:
    if method in ("GET", "HEAD"):
        return _body(response)
    if prefer == "representation":
        return _body(response)
    if prefer == "OperationOutcome":
        return information(f"{method} succeeded with status {response.status}.")
    return None


def _body(response: FhirResponse) -> Any:
    if response.raw is not None:
        return orjson.Fragment(response.raw)
    return response.resource


class ResultBudget:
    """The bytes of resources a Bundle's GET entries may return, in all.

    Writes echo what the Bundle sent (bounded by the body limit already); reads
    and searches are what can multiply it.  An entry that would pass the budget
    fails (in a transaction: the whole transaction) with a 422 ``too-costly``.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def charge(self, method: str, response: FhirResponse) -> None:
        if method not in ("GET", "HEAD"):
            return
        self.spent += _result_size(response)
        if self.spent > self.limit:
            raise Unprocessable(
                f"The results of this Bundle's GET entries pass {self.limit:,} bytes (the "
                "request body limit); run large searches on their own and follow their "
                "next links.", code="too-costly")


def _result_size(response: FhirResponse) -> int:
    """Bytes of a read (stored JSON) or a searchset (its resources, mostly stored JSON)."""
    if response.raw is not None:
        return len(response.raw)
    entries = (response.resource or {}).get("entry") or []
    return sum(len(orjson.dumps(entry["resource"])) for entry in entries
               if isinstance(entry, dict) and "resource" in entry)


# --- batch -------------------------------------------------------------------------------


def process_batch(host: BundleHost, request: FhirRequest,
                  bundle: dict[str, Any]) -> list[dict[str, Any]]:
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array.", expression="Bundle.entry")
    results = ResultBudget(host.settings.max_body_bytes)
    return [_batch_entry(host, request, index, raw, results)
            for index, raw in enumerate(raw_entries)]


def _batch_entry(host: BundleHost, request: FhirRequest, index: int,
                 raw: Any, results: ResultBudget) -> dict[str, Any]:
    try:
        try:
            entry = parse_entry(index, raw, host.operations)
        except FhirError as error:  # never reached the service: recorded here
            host.audit.refused_entry(request, raw, error)
            raise
        sub = FhirRequest(entry.method, urlsplit(entry.url).path, entry.query, entry.resource,
                          request.base_url, if_match=entry.request.get("ifMatch"),
                          if_none_match=entry.request.get("ifNoneMatch"),
                          if_none_exist=entry.request.get("ifNoneExist"),
                          prefer_return=request.prefer_return, access=request.access,
                          remote=request.remote)
        if entry.method == "PATCH":
            sub.body, sub.content_type = _patch_body(entry)
        entry.response = host.handle(sub)
        results.charge(entry.method, entry.response)
        return _response_entry(entry, request)
    except FhirError as error:
        return _failed(error.status, error.outcome())
    except Exception:  # a bug in one entry must not lose the other entries' results
        log.exception("batch entry %d failed", index)
        return _failed(500, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "fatal", "code": "exception",
             "diagnostics": f"Entry {index} failed with an internal error; see the server log.",
             "expression": [f"Bundle.entry[{index}]"]}]})


def _failed(status: int, outcome: dict[str, Any]) -> dict[str, Any]:
    return {"response": {"status": str(status), "outcome": outcome}}
