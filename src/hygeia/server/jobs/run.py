"""A job being run: its lease, its checkpoints, its folder (the kinds' ``JobContext``).

A kind saves checkpoints through :meth:`JobContext.checkpoint`; that is also
where it learns that the job was cancelled, and it is what lets another
process resume the job from the last checkpoint after a crash.  A kind must
therefore make its work idempotent from a checkpoint: redoing the steps after
it must not duplicate anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hygeia.fhir.datetime import now_us
from hygeia.server.extensions import JobStopped
from hygeia.store import Job

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

_SECOND = 1_000_000


@dataclass
class JobTiming:
    """How long a lease lasts, how often idle runners look for work, how long outputs stay."""

    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    keep_seconds: float = 24 * 3600.0


class JobRun:
    """A job being run here: what its kind sees (the :class:`JobContext` of
    ``hygeia.server.extensions``: its row, its host, its folder, the checkpoint call)
    and the lease that keeps it this process's."""

    def __init__(self, host: Host, job: Job, owner: str, timing: JobTiming) -> None:
        self.host = host
        self.job = job
        self.owner = owner
        self.timing = timing
        self.progress: dict[str, Any] = dict(job.progress or {})
        self.folder = host.files.job_folder(job.id)
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
        if not self.host.jobs.renew(self.job.id, self.owner, now_us(), lease, progress):
            raise JobStopped(self.job.id)
        self._renewed = time.monotonic()
