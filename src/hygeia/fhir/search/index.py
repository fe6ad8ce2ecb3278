"""Index rows extracted from a resource on write (in the same transaction as the version).

``_id`` and ``_lastUpdated`` are answered from the resource table itself, so
they have no rows, even in the complete set the matcher uses.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.extract import extract_index
from hygeia.fhir.search.extract.extractor import ANSWERED_BY_THE_RESOURCE_TABLE
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.rows import IndexRows


def index_resource(resource: dict[str, Any], registry: SearchRegistry | None = None, *,
                   complete: bool = False) -> IndexRows:
    """The index rows a resource version contributes (``complete``: shared parameters too).

    The store keeps no rows of its own for shared parameters
    (:mod:`hygeia.fhir.search.extract.shared`); the matcher asks for them.
    """
    rows = extract_index(resource, registry, complete=complete)
    if complete:
        rows.tokens = [row for row in rows.tokens
                       if row[0] not in ANSWERED_BY_THE_RESOURCE_TABLE]
        rows.dates = [row for row in rows.dates if row[0] not in ANSWERED_BY_THE_RESOURCE_TABLE]
    return rows
