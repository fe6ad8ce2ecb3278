"""The status URL of an asynchronous request (Bulk Data IG, "Status Request").

``GET [base]/_job/ID`` answers 202 with ``X-Progress`` while the job runs, the
kind's result once complete, and an OperationOutcome when it failed;
``DELETE`` cancels it and removes its files; ``GET [base]/_job/ID/FILE``
streams one output file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hygeia.fhir.datetime import format_http_date, now_us
from hygeia.fhir.outcome import Issue, NotFound, information, operation_outcome
from hygeia.server.auth.operations import check_job_owner
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.store import CANCELLED, COMPLETED, FAILED, Job

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hygeia.server.extensions import Host, JobKind

NDJSON = "application/fhir+ndjson"
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CHUNK = 1 << 20


def job_status(host: Host, kinds: Mapping[str, JobKind], job_id: str,
               request: FhirRequest) -> FhirResponse:
    job = _job(host, job_id, request)
    if job.state == COMPLETED:
        response = kinds[job.kind].completed(job, request)
        if job.expires is not None:
            response.headers["Expires"] = format_http_date(job.expires)
        return response
    if job.state == FAILED:
        return FhirResponse(500, resource=operation_outcome([Issue(
            "exception", f"The {job.kind} job failed: {job.error}")]))
    note = str((job.progress or {}).get("note") or f"{job.kind} job {job.state}")
    if job.error:  # a retry is pending after a transient failure
        note += f" (attempt {job.attempts} failed: {job.error}; retrying)"
    return FhirResponse(202, resource=information(note),
                        headers={"X-Progress": note[:200], "Retry-After": "1"})


def cancel_job(host: Host, job_id: str, request: FhirRequest) -> FhirResponse:
    """Cancel a running job, or tell a finished one its files are no longer needed."""
    job = _job(host, job_id, request)
    host.jobs.cancel(job.id, now_us())
    host.files.remove_job(job.id)
    done = "Its files were deleted." if job.state == COMPLETED else "It was cancelled."
    return FhirResponse(202, resource=information(f"The {job.kind} job {job.id}: {done}"))


def job_file(host: Host, job_id: str, name: str,
             request: FhirRequest) -> FhirResponse:
    """Stream one output file of a completed job, never holding it whole in memory."""
    job = _job(host, job_id, request)
    path = host.files.job_folder(job.id) / name
    if job.state != COMPLETED or not FILE_NAME.fullmatch(name) or not path.is_file():
        raise NotFound(f"The job {job_id} has no file '{name}'.", expression="file")
    return FhirResponse(200, stream=_read(path), media_type=NDJSON,
                        headers={"Content-Length": str(path.stat().st_size)})


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _job(host: Host, job_id: str, request: FhirRequest) -> Job:
    job = host.jobs.get(job_id)
    if job is None or job.state == CANCELLED:
        raise NotFound(f"There is no job {job_id}: it never existed, was cancelled, or its "
                       "files expired and were deleted.", expression="id")
    check_job_owner(request.access, job.request, job_id)
    return job


def file_url(request: FhirRequest, job_id: str, name: str) -> str:
    return f"{request.base_url}_job/{job_id}/{name}"


def status_url(request: FhirRequest, job_id: str) -> str:
    return f"{request.base_url}_job/{job_id}"
