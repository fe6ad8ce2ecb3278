"""Reading the record: a small search helper over the store's public session API."""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.fhir.search.query import parse_query
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
