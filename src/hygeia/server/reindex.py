"""``$reindex``: rebuild search indexes of stored resources in the background.

Needed after a custom SearchParameter is added (older resources were indexed
without it) or after an upgrade changes how values are indexed.  The job pages
through current resources and rebuilds their rows in small transactions, so
ordinary reads and writes go on meanwhile.  Job state lives in the server
process for now; the durable job table of the bulk-data issue will hold it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hygeia.fhir.outcome import NotFound, information
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.query import parse_query
from hygeia.fhir.spec import resource_types
from hygeia.server.context import FhirResponse

if TYPE_CHECKING:
    from hygeia.server.service import FhirService

log = logging.getLogger("hygeia.reindex")
BATCH = 500


@dataclass
class ReindexJob:
    id: str
    types: tuple[str, ...]
    done: int = 0
    finished: bool = False
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class Reindexer:
    """Starts reindex jobs and reports their progress."""

    def __init__(self, service: FhirService) -> None:
        self.service = service
        self.jobs: dict[str, ReindexJob] = {}

    def start(self, types: tuple[str, ...] | None = None) -> ReindexJob:
        job = ReindexJob(uuid.uuid4().hex, types or tuple(sorted(resource_types())))
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"reindex-{job.id}",
                                      daemon=True)
        self.jobs[job.id] = job
        job.thread.start()
        return job

    def status(self, job_id: str, base_url: str) -> FhirResponse:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"There is no reindex job {job_id}.", expression="$reindex")
        if not job.finished:
            return FhirResponse(202, resource=information(
                f"Reindexing: {job.done} resources so far."),
                headers={"X-Progress": f"{job.done} resources reindexed", "Retry-After": "2"})
        if job.error:
            return FhirResponse(500, resource=information(f"Reindex failed: {job.error}"))
        return FhirResponse(200, resource=information(
            f"Reindex complete: {job.done} resources of {len(job.types)} types."))

    def _run(self, job: ReindexJob) -> None:
        try:
            for kind in job.types:
                self._reindex_type(job, kind)
        except Exception as error:  # reported through the status endpoint
            log.exception("reindex job %s failed", job.id)
            job.error = str(error)
        job.finished = True

    def _reindex_type(self, job: ReindexJob, kind: str) -> None:
        registry = self.service.registry
        cursor = None
        while True:
            params = [("_count", str(BATCH)), ("_total", "none")]
            query = parse_query(kind, params + ([("_cursor", cursor)] if cursor else []),
                                registry=registry)
            with self.service.reader() as session:
                page = session.search(query)
            keys = [(m.resource_type, m.id) for m in page.matches]
            if keys:
                with self.service.transaction() as session:
                    job.done += session.reindex(
                        keys, lambda resource: index_resource(resource, registry))
            cursor = page.next_cursor
            if not cursor:
                return
