"""Evaluate a parsed query against one resource in memory.

The same :class:`~hygeia.fhir.search.query.Query` that the database answers is
evaluated here against a single resource, so the two can be checked against
each other; transactions use it to resolve conditional references to
resources created earlier in the same bundle.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.index import extract_tokens
from hygeia.fhir.search.query import IdClause, Query, TokenClause, TokenValue


def matches(query: Query, resource: dict[str, Any]) -> bool:
    """True when ``resource`` satisfies every clause of ``query``."""
    if resource.get("resourceType") != query.resource_type:
        return False
    return all(_clause_matches(clause, resource) for clause in query.clauses)


def _clause_matches(clause: IdClause | TokenClause, resource: dict[str, Any]) -> bool:
    if isinstance(clause, IdClause):
        return resource.get("id") in clause.ids
    rows = [row for row in extract_tokens(resource) if row[0] == clause.param]
    return any(_token_matches(value, system, code)
               for value in clause.values for _, system, code in rows)


def _token_matches(value: TokenValue, system: str | None, code: str | None) -> bool:
    if value.code is not None and value.code != code:
        return False
    if value.system == "":
        return system is None
    return value.system is None or value.system == system
