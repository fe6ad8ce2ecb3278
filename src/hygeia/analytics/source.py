"""The resources a view runs over, read from the store in bounded batches.

Reads walk the store's export slices (:class:`hygeia.store.ExportSlice`): one
resource type in key order as it stood at one instant, a batch of rows per reader
session, so a run over millions of resources holds one batch at a time and sees
one consistent instant however long it takes. ``patients`` narrows to the
Patient compartment of those patients, ``since`` to versions written since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.fhir.datetime import now_us
from hygeia.fhir.spec import patient_compartment
from hygeia.store import ExportSlice, Session

BATCH_ROWS = 5000  # per snapshot query: on PostgreSQL each query costs a round of set-up


@dataclass(frozen=True, slots=True)
class Selection:
    """Which stored resources of the view's type a run reads."""

    resource_type: str
    since: int | None = None
    patients: tuple[str, ...] | None = None


def stored_resources(
    reader: Callable[[], AbstractContextManager[Session]], selection: Selection
) -> Iterator[dict[str, Any]]:
    """Every current resource of ``selection``, one batch per snapshot query."""
    compartment = None
    if selection.patients is not None:
        compartment = tuple(patient_compartment().get(selection.resource_type, ()))
        if selection.resource_type == "Patient":
            compartment = None
    part = ExportSlice(
        selection.resource_type,
        now_us(),
        selection.since,
        compartment,
        selection.patients if compartment is not None else None,
    )
    wanted = set(selection.patients or ())
    after: int | None = 0
    while after is not None:
        seen, last = 0, after
        batch: list[bytes] = []
        with reader() as session, closing(session.export_rows(part, last, BATCH_ROWS)) as rows:
            for key, content in rows:
                seen, last = seen + 1, key
                if content is not None:
                    batch.append(bytes(content))
        for content in batch:
            resource = orjson.loads(content)
            only_wanted = selection.resource_type == "Patient" and selection.patients is not None
            if only_wanted and resource.get("id") not in wanted:
                continue
            yield resource
        after = last if seen == BATCH_ROWS else None
