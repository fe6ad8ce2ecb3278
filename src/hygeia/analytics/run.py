"""One run of a view: rows from resources, limited, encoded, errors found early.

Shared by ``$viewdefinition-run`` and ``hygeia view run``. The first rows are
computed before the response starts (:data:`PREFETCH_ROWS`), so a view that fails
on the data (a column with several values but no ``collection: true``, an unknown
constant) is answered with a 422 OperationOutcome rather than a cut-off body.

A failure after them raises :class:`RowsFailed` from the row iterator, naming the
resource: the HTTP front end then cuts the connection without ending the chunked
body (a client sees an incomplete read, never a short 200), and ``hygeia view run``
prints one ``error:`` line, exits 2 and leaves no ``--out`` file.
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
Row = dict[str, Any]


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


class RowsFailed(ViewError):
    """The view failed on a resource after its rows had started to go out."""


def keyed_rows(view: CompiledView, resources: Iterable[dict[str, Any]]) -> Iterator[Row]:
    """The view's rows, a failure naming the resource it happened on."""
    for resource in resources:
        if resource.get("resourceType") != view.resource:
            continue
        try:
            rows = view.resource_rows(resource)
        except ViewError as error:
            key = f"{view.resource}/{resource.get('id')}"
            raise ViewError(f"{key}: {error}", error.location) from error
        yield from rows


def _after_prefetch(rows: Iterator[Row], sent: int) -> Iterator[Row]:
    count = sent
    try:
        for row in rows:
            count += 1
            yield row
    except ViewError as error:
        raise RowsFailed(
            f"the view failed after {count:,} rows, so the answer is incomplete: {error}",
            error.location,
        ) from error


def rows_checked(
    view: CompiledView, resources: Iterable[dict[str, Any]], limit: int | None
) -> Iterator[Row]:
    """The view's rows, the first :data:`PREFETCH_ROWS` already computed (so their errors
    are a 422); a later failure raises :class:`RowsFailed` from the iterator."""
    rows: Iterator[Row] = keyed_rows(view, resources)
    if limit is not None:
        rows = itertools.islice(rows, limit)
    try:
        first = list(itertools.islice(rows, PREFETCH_ROWS))
    except ViewError as error:
        raise Unprocessable(
            f"The view cannot be run on this data: {error}", expression=error.location
        ) from error
    return itertools.chain(first, _after_prefetch(rows, len(first)))


def run_encoded(
    view: CompiledView,
    resources: Iterable[dict[str, Any]],
    kind: str,
    header: bool = True,
    limit: int | None = None,
) -> Encoded:
    rows = rows_checked(view, resources, limit)
    return Encoded(FORMATS[kind], encode(kind, view.columns, view.column_types, rows, header))
