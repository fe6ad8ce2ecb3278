"""The job runner: claims queued jobs and runs them on a background thread.

Work that outlives a request (bulk export and import, reindex) is a row in
the durable job table (:mod:`hygeia.store.jobs`).  Every serving process
runs one :class:`JobRunner` thread, which claims a job, runs its kind's
``run`` and records the result (the kinds and their context: :mod:`.kinds`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from hygeia.fhir.datetime import now_us
from hygeia.server.background import BackgroundLoop
from hygeia.server.extensions import JobFailed, JobKind, JobStopped
from hygeia.server.jobs.run import JobRun, JobTiming
from hygeia.store import CANCELLED, Job, JobStore, StatementLimits, statement_limits, worker_name

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

log = logging.getLogger("hygeia.jobs")
MAX_ATTEMPTS = 5
PARAMETER_REFRESH_SECONDS = 2.0
_SECOND = 1_000_000


class JobRunner(BackgroundLoop):
    """Claims and runs jobs on one background thread of a serving process."""

    thread_name = "hygeia-jobs"

    def __init__(self, host: Host, kinds: Mapping[str, JobKind],
                 refresh_parameters: Callable[[], bool],
                 timing: JobTiming | None = None) -> None:
        self.host = host
        self.kinds = kinds
        self.refresh_parameters = refresh_parameters
        self.timing = timing or JobTiming()
        self.owner = worker_name()
        super().__init__()
        self._last_sweep = 0.0
        self._last_refresh = 0.0

    @property
    def alive(self) -> bool:
        """True while the runner's thread is running (a readiness probe asks)."""
        return self.running

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sweep_expired()
                self._refresh_parameters()
                worked = self.run_next()
            except Exception:  # the database may be briefly unreachable; try again
                log.exception("job runner error")
                worked = False
            if not worked:
                self.sleep(self.timing.poll_seconds)

    def run_next(self) -> bool:
        """Claim one job and run it to its end; False when there was none."""
        store = self.host.jobs
        lease = int(self.timing.lease_seconds * _SECOND)
        job = store.claim(self.owner, self.kinds, now_us(), lease)
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
        kind = self.kinds[job.kind]
        context = JobRun(self.host, job, self.owner, self.timing)
        log.info("job %s (%s) started, attempt %d", job.id, job.kind, job.attempts)
        keep = int(self.timing.keep_seconds * _SECOND)
        limit = self.host.settings.jobs.statement_timeout
        try:
            with statement_limits(StatementLimits.for_job(limit)):
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
            self.host.files.remove_job(job.id)
        log.info("job %s (%s) stopped: it was cancelled or taken over", job.id, job.kind)

    def _refresh_parameters(self) -> None:
        """Every few seconds, pick up SearchParameters written by other processes."""
        if time.monotonic() - self._last_refresh >= PARAMETER_REFRESH_SECONDS:
            self._last_refresh = time.monotonic()
            if self.refresh_parameters():
                log.info("search parameters changed in another process; registry updated")

    def sweep_expired(self) -> None:
        """Delete finished jobs whose outputs have expired, files first (once a minute)."""
        if time.monotonic() - self._last_sweep < 60:
            return
        self._last_sweep = time.monotonic()
        for job in self.host.jobs.expired(now_us()):
            self.host.files.remove_job(job.id)
            self.host.jobs.delete(job.id)
