"""``$reindex``: rebuild search indexes of stored resources as a durable background job.

Needed after a custom SearchParameter is added (older resources were indexed
without it) or after an upgrade changes how values are indexed.  The job
pages through current resources and rebuilds their rows in small
transactions, so ordinary reads and writes go on meanwhile; it checkpoints
after every batch, and rebuilding a batch twice is harmless, so a restarted
server resumes it where it stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hygeia.fhir.datetime import now_us
from hygeia.fhir.outcome import information
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.query import parse_query
from hygeia.fhir.spec import resource_types
from hygeia.server.auth.operations import client_of
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.extensions import JobContext
from hygeia.server.jobs.status import status_url
from hygeia.store import Job

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

REINDEX = "reindex"
BATCH = 500


def start_reindex(host: Host, request: FhirRequest,
                  resource_type: str | None) -> FhirResponse:
    types = [resource_type] if resource_type else sorted(resource_types())
    job = host.jobs.submit(REINDEX, {"types": types, "client": client_of(request.access)},
                              now_us())
    host.wake_jobs()
    location = status_url(request, job.id)
    return FhirResponse(202, resource=information(
        f"Reindex started; poll {location} for progress."),
        headers={"Content-Location": location})


class ReindexJob:
    """The ``reindex`` job kind."""

    name = REINDEX

    def run(self, context: JobContext) -> dict[str, Any]:
        types: list[str] = context.job.request["types"]
        progress = context.progress or {"type": 0, "cursor": None, "done": 0}
        for index in range(int(progress["type"]), len(types)):
            progress = self._reindex_type(context, types, index, progress)
        return {"done": progress["done"], "types": len(types)}

    def _reindex_type(self, context: JobContext, types: list[str], index: int,
                      progress: dict[str, Any]) -> dict[str, Any]:
        host = context.host
        registry = host.registry
        cursor, done = progress["cursor"], int(progress["done"])
        while True:
            params = [("_count", str(BATCH)), ("_total", "none")]
            query = parse_query(types[index], params + ([("_cursor", cursor)] if cursor else []),
                                registry=registry)
            with host.reader() as session:
                page = session.search(query)
            keys = [(m.resource_type, m.id) for m in page.matches]
            if keys:
                with host.transaction() as session:
                    done += session.reindex(
                        keys, lambda resource: index_resource(resource, registry))
            cursor = page.next_cursor
            note = f"Reindexing: {done} resources so far."
            if not cursor:
                progress = {"type": index + 1, "cursor": None, "done": done, "note": note}
                context.checkpoint(progress)
                return progress
            context.checkpoint({"type": index, "cursor": cursor, "done": done, "note": note})

    def completed(self, job: Job, request: FhirRequest) -> FhirResponse:
        result = job.result or {}
        return FhirResponse(200, resource=information(
            f"Reindex complete: {result.get('done', 0)} resources of "
            f"{result.get('types', 0)} types."))
