"""Reading the record: a small search helper over the store's public session API."""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.fhir.outcome import Unprocessable
from hygeia.fhir.search.query import CompartmentClause, parse_query
from hygeia.store import Session

LIMIT = 1000  # at most this many matches are read per search (the parser's page cap)


def search(session: Session, resource_type: str, params: list[tuple[str, str]]
           ) -> list[dict[str, Any]]:
    """The current resources matching ``params`` (first :data:`LIMIT`)."""
    session.flush()  # the transaction's own buffered writes count (re-adjudication)
    query = parse_query(resource_type, [*params, ("_count", str(LIMIT))],
                        registry=session.registry)
    return [dict(orjson.loads(stored.content)) for stored in session.search(query).matches
            if stored.content]


LEDGER_MAX = 100_000  # matches search_all reads at most (an explicit error beyond)


def search_all(session: Session, resource_type: str, params: list[tuple[str, str]], *,
               page: int = LIMIT, most: int = LEDGER_MAX) -> list[dict[str, Any]]:
    """Every current resource matching ``params``, page by page (where a sum must see
    them all: a family's ledger); more than ``most`` is refused with an explicit error
    rather than summed in part."""
    session.flush()
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = parse_query(resource_type, [*params, ("_count", str(page)),
                                            *([("_cursor", cursor)] if cursor else [])],
                            registry=session.registry)
        result = session.search(query)
        found.extend(dict(orjson.loads(stored.content)) for stored in result.matches
                     if stored.content)
        if len(found) > most:
            raise Unprocessable(f"More than {most} {resource_type} resources match "
                                f"{'&'.join(f'{k}={v}' for k, v in params)}; the "
                                "adjudicator sums at most that many.",
                                expression=resource_type, code="too-costly")
        cursor = result.next_cursor
        if not cursor:
            return found


def patient_record(session: Session, patient_id: str, types: tuple[str, ...],
                   params: tuple[str, ...], *, limit: int = LIMIT
                   ) -> list[dict[str, Any]] | None:
    """In one search, the current resources of ``types`` that reference
    ``Patient/patient_id`` through any of ``params``, and the Patient itself when
    ``types`` names it; None when the search may have been cut at ``limit`` (the
    caller then reads each kind on its own). A claim reads its member's Patient,
    Coverages and Conditions this way: on PostgreSQL two round trips instead of five."""
    session.flush()
    query = parse_query(types[0], [("_count", str(limit))], registry=session.registry)
    query.types = types
    query.clauses.append(CompartmentClause("Patient", patient_id, params))
    matches = session.search(query).matches
    if len(matches) >= limit:
        return None
    return [dict(orjson.loads(stored.content)) for stored in matches if stored.content]


def read(session: Session, reference: str | None) -> dict[str, Any] | None:
    """The resource a relative reference ``Type/id`` names, or None."""
    if not reference or reference.count("/") != 1:
        return None
    resource_type, id = reference.split("/")
    stored = session.current(resource_type, id)
    if stored is None or stored.deleted or not stored.content:
        return None
    return dict(orjson.loads(stored.content))


def codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept."""
    if not isinstance(concept, dict):
        return []
    return [(str(c.get("system") or ""), str(c.get("code") or ""))
            for c in concept.get("coding") or [] if isinstance(c, dict)]
