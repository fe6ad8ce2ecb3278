"""Custom SearchParameters: POST one and it becomes searchable.

A stored SearchParameter resource with status active (or draft) whose
``expression`` the index can compile is added to the service's registry as
soon as its transaction commits (:class:`SearchParameterHook`, a write hook, so
by every write path); existing resources are indexed for it by ``$reindex``.
At start-up every stored SearchParameter is loaded again.  With several
server processes on one database, the others pick a new parameter up within
a few seconds (``FhirService.refresh_parameters``, called by the job runner).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from hygeia.fhir.outcome import Unprocessable
from hygeia.fhir.search.extract import compile_parameter
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry, parameter_from_definition
from hygeia.fhir.search.query import parse_query
from hygeia.fhir.spec import is_resource_type
from hygeia.store import COMPOSITE_COMPONENTS, Repository, Session, StoredVersion

log = logging.getLogger("hygeia.search")
SEARCHABLE_TYPES = {"number", "date", "string", "token", "reference", "composite", "quantity",
                    "uri"}


def to_parameter(resource: dict[str, Any], registry: SearchRegistry) -> SearchParameter:
    """Check a SearchParameter resource and turn it into a registry entry (422 if unusable)."""
    problems = []
    if resource.get("type") not in SEARCHABLE_TYPES:
        problems.append(f"type {resource.get('type')!r} cannot be indexed")
    if not resource.get("expression"):
        problems.append("it has no FHIRPath expression")
    bases = resource.get("base") or []
    if not bases or not all(is_resource_type(b) or b == "Resource" for b in bases):
        problems.append("base must name resource types")
    if len(resource.get("component") or []) > COMPOSITE_COMPONENTS:
        problems.append(f"a composite may have at most {COMPOSITE_COMPONENTS} components "
                        "(R4 defines none with more)")
    if problems:
        raise Unprocessable("This SearchParameter cannot be searched: " + "; ".join(problems)
                            + ".", expression="SearchParameter")
    known = {p.url: {"code": p.code, "type": p.type}
             for kind in bases for p in registry.for_type(kind).values()}
    parameter = parameter_from_definition(resource, known)
    try:
        compile_parameter(parameter)
    except Exception as error:  # the compiler's own errors vary by expression shape
        raise Unprocessable(f"The expression of this SearchParameter cannot be compiled: "
                            f"{error}", expression="SearchParameter.expression") from None
    return parameter


def load_custom_parameters(repository: Repository, registry: SearchRegistry) -> int:
    """Add every stored SearchParameter to ``registry``; returns how many were added."""
    added = 0
    with repository.reader() as session:
        cursor = None
        while True:
            query = parse_query("SearchParameter", [("_count", "500")] +
                                ([("_cursor", cursor)] if cursor else []))
            page = session.search(query)
            for stored in page.matches:
                added += _try_add(orjson.loads(stored.content or b"{}"), registry)
            cursor = page.next_cursor
            if not cursor:
                return added


def _try_add(resource: dict[str, Any], registry: SearchRegistry) -> int:
    if resource.get("status") == "retired":
        return 0
    try:
        registry.add(to_parameter(resource, registry))
        return 1
    except Unprocessable as error:
        log.warning("SearchParameter %s not loaded: %s", resource.get("url"), error)
        return 0


class SearchParameterHook:
    """A written SearchParameter takes effect (searchable) once its transaction commits.

    An unusable active one is refused (422) rather than stored unsearchable;
    deleting or retiring one stops it being searched.
    """

    types = frozenset({"SearchParameter"})

    def written(self, session: Session, version: StoredVersion) -> None:
        registry = session.registry
        if registry is None:
            return
        previous = session.version(version.resource_type, version.id, version.version - 1) \
            if version.version > 1 else None
        old = orjson.loads(previous.content) if previous and previous.content else {}
        if old.get("url"):
            session.after_commit(lambda: registry.remove(old["url"]))
        resource = orjson.loads(version.content) if version.content else None
        if resource is not None and resource.get("status") != "retired":
            parameter = to_parameter(resource, registry)
            session.after_commit(lambda: registry.add(parameter))
