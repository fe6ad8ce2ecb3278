"""What an interaction touched, for its AuditEvent: resources, patients, query, job.

The patient concerned (BALP's patient entity) is found where the request
names it or the data holds it: the token's patient context, the resource
read or written (its Patient-compartment references, or itself), a search's
``patient`` / ``subject`` / ``_id`` parameters, the compartment or
``$everything`` owner.  The patients of a search's *results* are not
collected: that would cost a parse of every match on every search page.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from hygeia.fhir.outcome import Issue
from hygeia.fhir.search.extract import extract_parameter
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.spec import patient_compartment
from hygeia.server.audit.events import SUCCESS, What, outcome_for, query_text
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.rest.router import Route
from hygeia.store import Session

# interactions whose request text is recorded as BALP's query entity (an operation's
# registration says whether its own is: Operation.records_query)
_QUERIES = frozenset({"search-type", "search-system", "search-compartment", "history-type",
                      "history-system", "conditional-update", "conditional-patch",
                      "conditional-delete"})
_JOBS = frozenset({"job-status", "job-file", "job-cancel"})
# what a request the router refused (unknown type, forbidden method) was trying to do
_UNROUTED = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def describe(route: Route, request: FhirRequest, response: FhirResponse,
             registry: SearchRegistry | None) -> What:
    """A successful read, search or operation."""
    operation = route.operation
    what = What(route.interaction, patients=_context_patients(route, request),
                action=operation.audit_action if operation is not None else None)
    if route.interaction in ("read", "vread"):
        what.references.append(_versioned(route, response.version))
        what.patients += resource_patients(response.raw, registry)
    elif route.resource_type and route.id and route.interaction not in _JOBS:
        what.references.append(f"{route.resource_type}/{route.id}")
    if _records_query(route):
        what.query = query_text(request.method, request.base_url + request.path, request.query)
    if route.interaction in _JOBS:
        what.job = route.id
    elif operation is not None and operation.starts_job:
        what.job = response.headers.get("Content-Location", "").rsplit("/", 1)[-1] or None
    return what


def _records_query(route: Route) -> bool:
    if route.operation is not None:
        return route.operation.records_query
    return route.interaction in _QUERIES


def describe_write(session: Session, route: Route, request: FhirRequest,
                   response: FhirResponse, registry: SearchRegistry | None) -> What:
    """A successful write, inside its transaction (a deletion's patients are read from
    the version it deleted)."""
    created = response.status == 201 and route.interaction in ("update", "conditional-update")
    what = What(route.interaction, created=created,
                patients=_context_patients(route, request))
    reference = _written_reference(route, request, response)
    if reference is not None:
        what.references.append(reference)
    content = response.raw
    if content is None and reference is not None and response.version and \
            response.version > 1:
        resource_type, id = reference.split("/")[:2]
        previous = session.version(resource_type, id, response.version - 1)
        content = previous.content if previous is not None else None
    what.patients += resource_patients(content, registry)
    if _records_query(route):
        what.query = query_text(request.method, request.base_url + request.path, request.query)
    return what


def describe_failure(route: Route | None, request: FhirRequest, status: int,
                     issues: Iterable[Issue]) -> What:
    """A refused or failed request: what was asked, by whom, and why it failed."""
    interaction = route.interaction if route is not None else \
        _UNROUTED.get(request.method, "read")
    if interaction == "bundle":
        body = request.body if isinstance(request.body, dict) else {}
        interaction = "bundle-transaction" if body.get("type") == "transaction" else \
            "bundle-batch"
    operation = route.operation if route is not None else None
    what = What(interaction, outcome=outcome_for(status),
                action=operation.audit_action if operation is not None else None,
                description=" ".join(issue.diagnostics for issue in issues),
                query=query_text(request.method, request.base_url + request.path, request.query))
    if route is not None:
        what.patients = _context_patients(route, request)
        if route.resource_type and route.id and interaction not in _JOBS:
            what.references.append(f"{route.resource_type}/{route.id}")
        if interaction in _JOBS:
            what.job = route.id
    else:
        if request.access is not None and request.access.bound_patient:
            what.patients.append(request.access.bound_patient)
        if request.path.count("/") == 1:  # Type/id
            what.references.append(request.path)
    return what


def resource_patients(content: bytes | None, registry: SearchRegistry | None) -> list[str]:
    """Ids of the patients a stored resource belongs to (its Patient-compartment links)."""
    if not content or registry is None:
        return []
    resource = orjson.loads(content)
    kind = resource.get("resourceType")
    if kind == "Patient":
        return [str(resource.get("id"))]
    found: list[str] = []
    for code in patient_compartment().get(kind, ()):
        parameter = registry.get(kind, code)
        if parameter is None:
            continue
        for row in extract_parameter(resource, parameter).references:
            if row[1] == "Patient" and row[2]:
                found.append(row[2])
    return list(dict.fromkeys(found))


def query_patients(route: Route, query: Iterable[tuple[str, str]]) -> list[str]:
    """Patients a search names: ``patient=``, ``subject=Patient/..``, Patient ``_id=``.

    >>> query_patients(Route("search-type", "Observation"),
    ...                [("subject", "Patient/1,Group/2"), ("patient", "3")])
    ['1', '3']
    """
    found: list[str] = []
    for name, value in query:
        code, _, modifier = name.partition(":")
        if "." in name:
            continue  # a chain names the patient's properties, not the patient
        by_id = (code == "patient" or (code == "subject" and modifier == "Patient")
                 or (code == "_id" and route.resource_type == "Patient"))
        if code not in ("patient", "subject", "_id"):
            continue
        for item in value.split(","):
            patient = _patient_id(item.strip(), bare=by_id)
            if patient:
                found.append(patient)
    return found


def _patient_id(reference: str, *, bare: bool) -> str | None:
    """``Patient/1``, ``http://x/fhir/Patient/1`` or (when ``bare``) ``1`` -> ``1``."""
    if "/" not in reference:
        return reference if bare and reference else None
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    if len(parts) >= 4 and parts[-4] == "Patient" and parts[-2] == "_history":
        return parts[-3]
    return None


def _context_patients(route: Route, request: FhirRequest) -> list[str]:
    """The patients the request itself names, and the token's patient."""
    found: list[str] = []
    if request.access is not None and request.access.bound_patient:
        found.append(request.access.bound_patient)
    if route.resource_type == "Patient" and route.id and route.interaction not in (
            "create",):
        found.append(route.id)
    if route.interaction.startswith("search") or route.interaction.startswith("conditional"):
        found += query_patients(route, request.query)
    return found


def _versioned(route: Route, version: int | None) -> str:
    base = f"{route.resource_type}/{route.id}"
    return f"{base}/_history/{version}" if version is not None else base


def _written_reference(route: Route, request: FhirRequest,
                       response: FhirResponse) -> str | None:
    """``Type/id/_history/v`` of the version a write stored."""
    if response.location:
        return response.location.removeprefix(request.base_url)
    if route.resource_type and route.id and response.version is not None:
        return _versioned(route, response.version)
    return None


__all__ = ["SUCCESS", "describe", "describe_failure", "describe_write", "query_patients",
           "resource_patients"]
