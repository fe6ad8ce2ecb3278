"""The work the offload helper does, and how the request thread asks for it.

``IndexBatcher`` collects the resources a transaction writes and sends them to
the helper in batches as they come, so extraction of one batch overlaps the
request thread's work on the next; the store asks for the rows only when it
inserts them (at flush).  ``BundleCheck`` validates a transaction Bundle's
entries in the helper while the request thread already runs the transaction;
the verdict is awaited before commit.  Both fall back to inline work if the
helper is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import orjson

from hygeia.fhir.outcome import FhirError, Issue, Unprocessable
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry, default_registry
from hygeia.fhir.search.rows import IndexRows
from hygeia.server.offload.helper import Offload, OffloadUnavailable

_ROW_FIELDS = tuple(field.name for field in fields(IndexRows))
# resources per job: small enough that the last batch's wait stays short.  Only full
# batches go to the helper, as the transaction puts them; what is left at flush (a small
# write's every resource) is extracted inline, while the helper finishes the batches sent
# before: a batch sent at flush is waited for at once, so it overlaps nothing and only adds
# the round trip, the pickling and a second JSON parse (py-spy of the MLLP group
# committer: the helper's round trip took twice the samples of the extraction it saved)
BATCH = 48


def row_lists(rows: IndexRows) -> tuple[list[Any], ...]:
    """IndexRows as plain lists: pickle handles those in C (the dataclass goes through Python)."""
    return tuple(getattr(rows, name) for name in _ROW_FIELDS)


def custom_parameters(registry: SearchRegistry) -> tuple[SearchParameter, ...]:
    """The parameters ``registry`` holds beyond (or instead of) the official ones."""
    official = default_registry()
    return tuple(parameter for parameter in registry.parameters()
                 if official.by_url(parameter.url) != parameter)


def validate_bundle(body: bytes) -> list[Issue]:
    """The validation issues of a transaction's entries (none if it is valid)."""
    from hygeia.server.rest.entries import parse_entries, validate_entries

    try:
        validate_entries(parse_entries(orjson.loads(body)))
    except Unprocessable as error:
        return error.issues
    except (FhirError, orjson.JSONDecodeError):
        pass  # the request thread reports these itself, before the transaction
    return []


class IndexBatcher:
    """Index rows for one transaction's writes, extracted in the helper."""

    def __init__(self, offload: Offload, registry: SearchRegistry) -> None:
        self._offload = offload
        self._registry = registry
        self._waiting: list[_PendingRows] = []
        self.answers: dict[int, list[tuple[list[Any], ...]] | None] = {}  # read, per ticket

    def rows_for(self, resource: dict[str, Any], content: bytes
                 ) -> Callable[[], IndexRows]:
        pending = _PendingRows(self, resource, content)
        self._waiting.append(pending)
        if len(self._waiting) >= BATCH:
            self.send()
        return pending

    def send(self) -> None:
        """Send the full batch that is waiting to the helper."""
        batch, self._waiting = self._waiting, []
        registry = self._registry
        try:
            ticket = self._offload.submit(
                ("extract", [pending.content for pending in batch]),
                generation=registry.generation, state=lambda: custom_parameters(registry))
        except OffloadUnavailable:
            return  # each pending one extracts inline when asked
        for position, pending in enumerate(batch):
            pending.ticket, pending.position = ticket, position

    def unsent_flushed(self) -> None:
        """A flush takes every resource waiting: none of them is to be sent later."""
        self._waiting = []

    def extract_inline(self, resource: dict[str, Any]) -> IndexRows:
        return index_resource(resource, self._registry)

    def answer(self, ticket: int) -> list[tuple[list[Any], ...]] | None:
        """One helper answer serves a whole batch: kept here once read."""
        if ticket not in self.answers:
            self.answers[ticket] = self._offload.result_or_none(ticket)
        return self.answers[ticket]


class _PendingRows:
    """Called by the store at flush: the rows, from the helper's answer, or inline when
    never sent (the flush's unfilled batch) or the helper failed."""

    __slots__ = ("batcher", "content", "position", "resource", "ticket")

    def __init__(self, batcher: IndexBatcher, resource: dict[str, Any], content: bytes) -> None:
        self.batcher, self.resource, self.content = batcher, resource, content
        self.ticket: int | None = None
        self.position = 0

    def __call__(self) -> IndexRows:
        if self.ticket is None:
            self.batcher.unsent_flushed()
        answer = None if self.ticket is None else self.batcher.answer(self.ticket)
        if answer is None:
            return self.batcher.extract_inline(self.resource)
        return IndexRows(*answer[self.position])


class BundleCheck:
    """A transaction's validation, running in the helper; :meth:`raise_if_invalid` awaits it."""

    def __init__(self, offload: Offload, body: bytes) -> None:
        self._offload = offload
        self._issues: list[Issue] | None = None  # known once the verdict is in
        self._ticket: int | None
        try:
            self._ticket = offload.submit(("validate", body))
        except OffloadUnavailable:
            self._ticket = None

    def raise_if_invalid(self, inline: Callable[[], None]) -> None:
        """Raise the 422 the entries deserve; ``inline`` validates if the helper is gone."""
        if self._issues is None:
            self._issues = self._answer()
            if self._issues is None:
                inline()  # raises if invalid
                self._issues = []
        if self._issues:
            raise Unprocessable(issues=self._issues)

    def _answer(self) -> list[Issue] | None:
        ticket, self._ticket = self._ticket, None
        return None if ticket is None else self._offload.result_or_none(ticket)
