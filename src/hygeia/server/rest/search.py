"""Search use cases: type, system and compartment search, as searchset Bundles.

The store finds one page of matches; this module adds ``_include`` /
``_revinclude`` resources, shapes resources for ``_summary`` / ``_elements``,
reports ignored parameters in an OperationOutcome entry and writes the paging
links (the ``_cursor`` in them keeps pages stable while data changes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from hygeia.fhir.outcome import BadRequest, Issue, NotFound, operation_outcome
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.query import CompartmentClause, Query, SearchLimits, parse_query
from hygeia.fhir.search.results import WHEN_FREE, Include
from hygeia.fhir.shaping import shape
from hygeia.fhir.spec import is_resource_type, patient_compartment
from hygeia.server.context import FhirRequest, FhirResponse, Settings, bundle
from hygeia.store import Session, StoredVersion

MAX_ITERATIONS = 4  # :iterate depth; guards against cycles in the reference graph


def search_type(session: Session, request: FhirRequest, resource_type: str,
                settings: Settings) -> FhirResponse:
    query = _parse(request, resource_type, settings, session.registry)
    return _respond(session, request, query, f"{resource_type}", settings)


def search_system(session: Session, request: FhirRequest, settings: Settings) -> FhirResponse:
    """``GET [base]?_type=A,B&...``: parameters must be valid for every listed type."""
    types = _types_parameter(request.query)
    rest = [(k, v) for k, v in request.query if k != "_type"]
    query = _parse(FhirRequest(request.method, "", rest, prefer_strict=request.prefer_strict),
                   types[0], settings, session.registry)
    query.types = tuple(types)
    return _respond(session, request, query, "", settings)


def search_compartment(session: Session, request: FhirRequest, owner_type: str, owner_id: str,
                       resource_type: str, settings: Settings) -> FhirResponse:
    """``GET [base]/Patient/1/Observation``: the type search inside one patient's compartment."""
    if owner_type != "Patient":
        raise BadRequest(f"Only Patient compartments are supported, not {owner_type}.",
                         code="not-supported")
    params = patient_compartment().get(resource_type)
    if params is None and resource_type != "Patient":
        raise BadRequest(f"{resource_type} is not in the Patient compartment.",
                         expression=resource_type)
    query = _parse(request, resource_type, settings, session.registry)
    query.clauses.append(CompartmentClause(owner_type, owner_id, tuple(params or ())))
    return _respond(session, request, query, f"{owner_type}/{owner_id}/{resource_type}", settings)


def everything(session: Session, request: FhirRequest, patient_id: str,
               settings: Settings) -> FhirResponse:
    """``Patient/{id}/$everything``: the patient, its compartment and what those reference.

    Honours ``_since`` (resources changed since), ``_type`` (restrict the types) and
    ``_count`` (page size, with cursor paging like any search).
    """
    patient = session.current("Patient", patient_id)
    if patient is None or patient.deleted:
        raise NotFound(f"Patient/{patient_id} does not exist.", expression="Patient")
    compartment = patient_compartment()
    types = tuple(sorted({"Patient", *compartment}))
    wanted = [t for k, v in request.query if k == "_type" for t in v.split(",") if t]
    if wanted:
        types = tuple(t for t in types if t in wanted)
    params = [(k, v) for k, v in request.query if k in ("_count", "_cursor", "_total")]
    params += [("_lastUpdated", f"ge{v}") for k, v in request.query if k == "_since"]
    query = parse_query("Patient", params, max_count=settings.search.max_count,
                        registry=session.registry, limits=search_limits(settings))
    if not query.options.count_given:
        query.options.count = settings.search.default_count
    if not any(k == "_total" for k, _ in params):
        # counting a whole record cost as much as fetching its page; clients page by links
        query.options.total = WHEN_FREE
    query.types = types
    all_params = tuple(sorted({code for codes in compartment.values() for code in codes}))
    query.clauses.append(CompartmentClause("Patient", patient_id, all_params))
    # what the compartment's resources reference (practitioners, organisations...);
    # references into the compartment types themselves are matches on some page already
    query.options.includes.append(Include("*", None, None, False,
                                          excluded_targets=tuple(sorted({"Patient",
                                                                         *compartment}))))
    return _respond(session, request, query, f"Patient/{patient_id}/$everything", settings)


def _types_parameter(params: list[tuple[str, str]]) -> list[str]:
    types = [t for k, v in params if k == "_type" for t in v.split(",") if t]
    if not types:
        raise BadRequest("A search across all types needs _type (e.g. _type=Patient,Group).",
                         expression="_type", code="not-supported")
    for name in types:
        if not is_resource_type(name):
            raise BadRequest(f"_type names '{name}', which is not a resource type.",
                             expression="_type")
    return types


def _parse(request: FhirRequest, resource_type: str, settings: Settings,
           registry: SearchRegistry | None) -> Query:
    query = parse_query(resource_type, request.query, strict=request.prefer_strict,
                        max_count=settings.search.max_count, registry=registry,
                        limits=search_limits(settings))
    if not query.options.count_given:
        query.options.count = settings.search.default_count
    return query


def search_limits(settings: Settings) -> SearchLimits:
    """What one client search may ask for, from the server's settings."""
    return SearchLimits(values=settings.search.max_values,
                        chain_depth=settings.search.max_chain_depth,
                        parameters=settings.search.max_parameters)


def _respond(session: Session, request: FhirRequest, query: Query, path: str,
             settings: Settings) -> FhirResponse:
    page = session.search(query)
    options = query.options
    entries = [_entry(request.base_url, stored, "match", options.summary, options.elements)
               for stored in page.matches]
    included, complete = _included(session, page.matches, query, settings.search.max_included)
    for stored in included:
        entries.append(_entry(request.base_url, stored, "include", options.summary,
                              options.elements))
    notes = list(query.ignored)
    if not complete:
        notes.append(Issue(
            "too-costly", f"Only the first {settings.search.max_included} included resources are "
            "in this page; ask for fewer matches per page (_count) to get all of them.",
            expression="_include", severity="warning"))
    if notes:
        entries.append({"resource": operation_outcome(notes), "search": {"mode": "outcome"}})
    total = {} if page.total is None else {"total": page.total}
    links = _links(request, path, page.next_cursor, page.previous_cursor,
                   used=_used_parameters(request.query, query))
    return FhirResponse(200, resource=bundle("searchset", entries, **total, link=links))


def _included(session: Session, matches: list[StoredVersion], query: Query, limit: int
              ) -> tuple[list[StoredVersion], bool]:
    """_include / _revinclude targets, de-duplicated, following :iterate a few levels;
    at most ``limit`` of them, and whether that was all of them."""
    options = query.options
    if not options.includes and not options.revincludes:
        return [], True
    seen = {(m.resource_type, m.id) for m in matches}
    found: list[StoredVersion] = []
    frontier = matches
    for depth in range(MAX_ITERATIONS):
        wave: list[StoredVersion] = []
        for include, reverse in _active(options.includes, options.revincludes, depth):
            # one more than still fits: finding it is how an overflow shows
            room = limit - len(found) - len(wave) + 1
            for stored in session.included(frontier, include, reverse, room + len(seen)):
                if (stored.resource_type, stored.id) not in seen:
                    if len(found) + len(wave) == limit:
                        found.extend(wave)
                        return found, False
                    seen.add((stored.resource_type, stored.id))
                    wave.append(stored)
        found.extend(wave)
        frontier = wave
        if not wave:
            break
    return found, True


def _active(includes: list[Include], revincludes: list[Include], depth: int
            ) -> list[tuple[Include, bool]]:
    """At depth 0 every include applies; deeper only the :iterate ones."""
    return [(inc, reverse) for group, reverse in ((includes, False), (revincludes, True))
            for inc in group if depth == 0 or inc.iterate]


def _entry(base_url: str, stored: StoredVersion, mode: str, summary: str | None,
           elements: tuple[str, ...]) -> dict[str, Any]:
    content = stored.content or b"{}"
    resource: Any = orjson.Fragment(content)
    if summary not in (None, "false") or elements:
        resource = shape(orjson.loads(content), summary, elements)
    return {"fullUrl": f"{base_url}{stored.resource_type}/{stored.id}", "resource": resource,
            "search": {"mode": mode}}


def _used_parameters(params: list[tuple[str, str]], query: Query) -> list[tuple[str, str]]:
    """The parameters the search applied: an ignored unknown one is reported in the
    outcome entry and left out of the links, since "the server SHALL return the
    parameters that were actually used" (search.html, self link)."""
    ignored = {issue.expression for issue in query.ignored}
    return [(k, v) for k, v in params if k not in ignored]


def _links(request: FhirRequest, path: str, next_cursor: str | None,
           previous_cursor: str | None, used: list[tuple[str, str]]) -> list[dict[str, str]]:
    """self, first, next and previous, each with the used parameters and its own cursor."""
    kept = [(k, v) for k, v in used if k != "_cursor"]

    def url(cursor: str | None) -> str:
        params = kept + ([("_cursor", cursor)] if cursor else [])
        query = urlencode(params)
        return f"{request.base_url}{path}" + (f"?{query}" if query else "")

    links = [{"relation": "self", "url": url(_current_cursor(request))},
             {"relation": "first", "url": url(None)}]
    if next_cursor:
        links.append({"relation": "next", "url": url(next_cursor)})
    if previous_cursor:
        links.append({"relation": "previous", "url": url(previous_cursor)})
    return links


def _current_cursor(request: FhirRequest) -> str | None:
    return next((v for k, v in request.query if k == "_cursor"), None)
