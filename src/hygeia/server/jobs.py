"""Background jobs: kinds, the context a job runs in, and the runner that claims them.

Work that outlives a request (bulk export and import, reindex) is a row in
the durable job table (:mod:`hygeia.store.jobs`).  Every serving process
runs one :class:`JobRunner` thread, which claims a job, runs its kind's
``run`` and records the result.  A kind saves checkpoints through
:meth:`JobContext.checkpoint`; that is also where it learns that the job was
cancelled, and it is what lets another process resume the job from the last
checkpoint after a crash.  A kind must therefore make its work idempotent
from a checkpoint: redoing the steps after it must not duplicate anything.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hygeia.fhir.datetime import now_us
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.store.jobs import CANCELLED, Job, JobStore, worker_name
from hygeia.store.limits import StatementLimits, statement_limits

if TYPE_CHECKING:
    from hygeia.server.service import FhirService

log = logging.getLogger("hygeia.jobs")
MAX_ATTEMPTS = 5
PARAMETER_REFRESH_SECONDS = 2.0
_SECOND = 1_000_000


class JobStopped(Exception):
    """The job is no longer this worker's (cancelled, or taken over): stop quietly."""


class JobFailed(Exception):
    """A failure that retrying cannot fix (bad input found while running)."""


class JobKind(Protocol):
    """One kind of background job, registered on the service under ``name``."""

    name: str

    def run(self, context: JobContext) -> dict[str, Any]:
        """Do the work (resuming from ``context.progress``); returns the job's result."""

    def completed(self, job: Job, request: FhirRequest) -> FhirResponse:
        """The status-endpoint answer for a completed job."""


@dataclass
class JobTiming:
    """How long a lease lasts, how often idle runners look for work, how long outputs stay."""

    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    keep_seconds: float = 24 * 3600.0


class JobContext:
    """What a running job sees: its row, its service, its folder and the checkpoint call."""

    def __init__(self, service: FhirService, job: Job, owner: str, timing: JobTiming) -> None:
        self.service = service
        self.job = job
        self.owner = owner
        self.timing = timing
        self.progress: dict[str, Any] = dict(job.progress or {})
        self.folder = service.files.job_folder(job.id)
        self._renewed = time.monotonic()
        self._checkpointed = time.monotonic()

    def since_checkpoint(self) -> float:
        """Seconds since the last checkpoint (or since the job started here)."""
        return time.monotonic() - self._checkpointed

    def checkpoint(self, progress: dict[str, Any]) -> None:
        """Save ``progress`` as the point to resume from, and renew the lease.

        Raises :class:`JobStopped` when the job was cancelled or taken over.
        """
        self.progress = progress
        self._renew(progress)
        self._checkpointed = time.monotonic()

    def keep_alive(self) -> None:
        """Renew the lease without a new checkpoint, when a third of it has passed."""
        if time.monotonic() - self._renewed > self.timing.lease_seconds / 3:
            self._renew(None)

    def _renew(self, progress: dict[str, Any] | None) -> None:
        lease = int(self.timing.lease_seconds * _SECOND)
        if not self.service.jobs.renew(self.job.id, self.owner, now_us(), lease, progress):
            raise JobStopped(self.job.id)
        self._renewed = time.monotonic()


class JobRunner:
    """Claims and runs jobs on one background thread of a serving process."""

    def __init__(self, service: FhirService, timing: JobTiming | None = None) -> None:
        self.service = service
        self.timing = timing or JobTiming()
        self.owner = worker_name()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._last_refresh = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hygeia-jobs", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the runner's thread is running (a readiness probe asks)."""
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Look for work now (a job was just submitted in this process)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep_expired()
                self._refresh_parameters()
                worked = self.run_next()
            except Exception:  # the database may be briefly unreachable; try again
                log.exception("job runner error")
                worked = False
            if not worked:
                self._wake.wait(self.timing.poll_seconds)
                self._wake.clear()

    def run_next(self) -> bool:
        """Claim one job and run it to its end; False when there was none."""
        store = self.service.jobs
        lease = int(self.timing.lease_seconds * _SECOND)
        job = store.claim(self.owner, self.service.job_kinds, now_us(), lease)
        if job is None:
            return False
        self._run(store, job)
        return True

    def run_all(self) -> int:
        """Run jobs until none is waiting (tests and the CLI); returns how many ran."""
        count = 0
        while self.run_next():
            count += 1
        return count

    def _run(self, store: JobStore, job: Job) -> None:
        kind = self.service.job_kinds[job.kind]
        context = JobContext(self.service, job, self.owner, self.timing)
        log.info("job %s (%s) started, attempt %d", job.id, job.kind, job.attempts)
        keep = int(self.timing.keep_seconds * _SECOND)
        limit = self.service.settings.job_statement_timeout
        try:
            with statement_limits(StatementLimits(limit, limit)):
                result = kind.run(context)
        except JobStopped:
            self._stopped(store, job)
            return
        except JobFailed as error:
            store.fail(job.id, self.owner, now_us(), str(error), now_us() + keep)
            return
        except Exception as error:
            log.exception("job %s (%s) failed on attempt %d", job.id, job.kind, job.attempts)
            self._failed(store, job, error, keep)
            return
        if not store.complete(job.id, self.owner, now_us(), result, now_us() + keep):
            self._stopped(store, job)
            return
        log.info("job %s (%s) completed", job.id, job.kind)

    def _failed(self, store: JobStore, job: Job, error: Exception, keep: int) -> None:
        message = f"{type(error).__name__}: {error}"
        if job.attempts >= MAX_ATTEMPTS:
            store.fail(job.id, self.owner, now_us(),
                       f"Gave up after {job.attempts} attempts; the last error was {message}",
                       now_us() + keep)
            return
        delay = min(60, 2 ** job.attempts) * _SECOND
        store.retry_later(job.id, self.owner, now_us(), now_us() + delay, message)

    def _stopped(self, store: JobStore, job: Job) -> None:
        current = store.get(job.id)
        if current is None or current.state == CANCELLED:
            self.service.files.remove_job(job.id)
        log.info("job %s (%s) stopped: it was cancelled or taken over", job.id, job.kind)

    def _refresh_parameters(self) -> None:
        """Every few seconds, pick up SearchParameters written by other processes."""
        if time.monotonic() - self._last_refresh >= PARAMETER_REFRESH_SECONDS:
            self._last_refresh = time.monotonic()
            if self.service.refresh_parameters():
                log.info("search parameters changed in another process; registry updated")

    def sweep_expired(self) -> None:
        """Delete finished jobs whose outputs have expired, files first (once a minute)."""
        if time.monotonic() - self._last_sweep < 60:
            return
        self._last_sweep = time.monotonic()
        for job in self.service.jobs.expired(now_us()):
            self.service.files.remove_job(job.id)
            self.service.jobs.delete(job.id)


class FileArea:
    """The server's folder for job outputs (``jobs/ID/...``) and files to import.

    Without a configured folder a temporary one is made, but only when first
    needed: most services (``hygeia load``, tests) never run a job.
    """

    def __init__(self, root: Path | None) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="hygeia-files-"))
        return self._root

    def job_folder(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_folder(job_id), ignore_errors=True)
