"""Where jobs keep their output files, and where files to ``$import`` are looked for."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


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
