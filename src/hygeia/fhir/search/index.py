"""Index values extracted from a resource on write.

The foundation indexes identifier tokens (what conditional interactions need);
the search issue extends this to every R4 SearchParameter.  Index rows are
written in the same database transaction as the resource version.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.rows import IndexRows, TokenRow


def index_resource(resource: dict[str, Any]) -> IndexRows:
    """Every index row a resource version contributes."""
    return IndexRows(tokens=extract_tokens(resource))


def extract_tokens(resource: dict[str, Any]) -> list[TokenRow]:
    """Return (param, system, value) rows for the resource's identifiers.

    Every official R4 ``identifier`` SearchParameter has the expression
    ``<Type>.identifier``, so reading the top-level element is exact.
    """
    identifiers = resource.get("identifier")
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    if not isinstance(identifiers, list):
        return []
    rows: list[TokenRow] = []
    for identifier in identifiers:
        if isinstance(identifier, dict) and (identifier.get("value") or identifier.get("system")):
            rows.append(("identifier", identifier.get("system"), identifier.get("value")))
    return rows
