"""One run of a view: rows from resources, limited, encoded, errors found early.

Shared by ``$viewdefinition-run`` and ``hygeia view run``. The first rows are
computed before the response starts (:data:`PREFETCH_ROWS`), so a view that fails
on the data (a column with several values but no ``collection: true``, an unknown
constant) is answered with a 422 OperationOutcome rather than a cut-off body.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from hygeia.analytics.formats import FORMATS, encode
from hygeia.analytics.views import CompiledView, ViewError, compile_view
from hygeia.fhir.outcome import Unprocessable

PREFETCH_ROWS = 1000


@dataclass(frozen=True, slots=True)
class Encoded:
    media_type: str
    chunks: Iterator[bytes]


def compiled(view: Any) -> CompiledView:
    """The view compiled, or a 422 naming what is wrong and where."""
    try:
        return compile_view(view)
    except ViewError as error:
        raise Unprocessable(
            f"The ViewDefinition is invalid: {error}", expression=error.location
        ) from error


def rows_checked(
    view: CompiledView, resources: Iterable[dict[str, Any]], limit: int | None
) -> Iterator[dict[str, Any]]:
    """The view's rows, the first :data:`PREFETCH_ROWS` already computed (so their errors
    are a 422); a later failure ends the stream."""
    rows: Iterator[dict[str, Any]] = view.rows(resources)
    if limit is not None:
        rows = itertools.islice(rows, limit)
    try:
        first = list(itertools.islice(rows, PREFETCH_ROWS))
    except ViewError as error:
        raise Unprocessable(
            f"The view cannot be run on this data: {error}", expression=error.location
        ) from error
    return itertools.chain(first, rows)


def run_encoded(
    view: CompiledView,
    resources: Iterable[dict[str, Any]],
    kind: str,
    header: bool = True,
    limit: int | None = None,
) -> Encoded:
    rows = rows_checked(view, resources, limit)
    return Encoded(FORMATS[kind], encode(kind, view.columns, view.column_types, rows, header))
