"""The job runner on both databases: claims, retries, failures, expiry, takeover."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hygeia.fhir.datetime import now_us
from hygeia.server import FhirRequest, FhirResponse, FhirService, JobSettings, Settings
from hygeia.server.extensions import JobContext, JobFailed
from hygeia.server.jobs.runner import MAX_ATTEMPTS
from hygeia.store import Repository
from hygeia.store.jobs import COMPLETED, FAILED, QUEUED, Job, owner_gone, worker_name
from hygeia.store.plain_sql import writing
from tests.helpers import body, call, expire_lease


class Flaky:
    """A job kind that fails its first ``failures`` attempts, then counts to 3."""

    name = "flaky"

    def __init__(self, failures: int, permanent: bool = False) -> None:
        self.failures = failures
        self.permanent = permanent

    def run(self, context: JobContext) -> dict[str, Any]:
        if context.job.attempts <= self.failures:
            if self.permanent:
                raise JobFailed("the input is missing")
            raise ConnectionError(f"attempt {context.job.attempts} lost the database")
        start = int((context.progress or {}).get("n", 0))
        for n in range(start, 3):
            context.checkpoint({"n": n + 1, "note": f"counted {n + 1}"})
        return {"counted": 3}

    def completed(self, job: Job, request: FhirRequest) -> FhirResponse:
        return FhirResponse(200, resource={"resourceType": "Parameters", "parameter": [
            {"name": "counted", "valueInteger": (job.result or {})["counted"]}]})


@pytest.fixture
def jobs(repository: Repository, tmp_path: Path) -> FhirService:
    settings = Settings(jobs=JobSettings(files_dir=str(tmp_path), keep_seconds=0))
    return FhirService(repository, settings)


def submit(service: FhirService, kind: Flaky) -> str:
    service.job_kinds[kind.name] = kind
    return service.jobs.submit(kind.name, {}, now_us()).id


def test_transient_failures_are_retried_from_the_queue(jobs: FhirService) -> None:
    job_id = submit(jobs, Flaky(failures=2))
    runner = jobs.job_runner()
    assert runner.run_next() is True
    waiting = jobs.jobs.get(job_id)
    assert waiting is not None and waiting.state == QUEUED and waiting.attempts == 1
    assert "lost the database" in (waiting.error or "")
    assert runner.run_next() is False  # the retry waits out its delay
    status = call(jobs, "GET", f"_job/{job_id}")
    assert status.status == 202 and "retrying" in status.headers["X-Progress"]
    expire_lease(jobs, job_id)
    runner.run_next()
    expire_lease(jobs, job_id)
    runner.run_next()
    done = jobs.jobs.get(job_id)
    assert done is not None and done.state == COMPLETED and done.attempts == 3
    assert body(call(jobs, "GET", f"_job/{job_id}"))["parameter"][0]["valueInteger"] == 3


def test_a_permanent_failure_is_a_500_outcome_at_once(jobs: FhirService) -> None:
    job_id = submit(jobs, Flaky(failures=1, permanent=True))
    jobs.job_runner().run_next()
    failed = jobs.jobs.get(job_id)
    assert failed is not None and failed.state == FAILED and failed.attempts == 1
    status = call(jobs, "GET", f"_job/{job_id}")
    assert status.status == 500 and "input is missing" in body(status)["issue"][0]["diagnostics"]


def test_attempts_run_out(jobs: FhirService) -> None:
    job_id = submit(jobs, Flaky(failures=MAX_ATTEMPTS + 1))
    for _ in range(MAX_ATTEMPTS):
        expire_lease(jobs, job_id)
        jobs.job_runner().run_next()
    failed = jobs.jobs.get(job_id)
    assert failed is not None and failed.state == FAILED
    assert f"Gave up after {MAX_ATTEMPTS} attempts" in (failed.error or "")


def test_finished_jobs_expire_with_their_files(jobs: FhirService) -> None:
    job_id = submit(jobs, Flaky(failures=0))
    runner = jobs.job_runner()
    runner.run_next()
    folder = jobs.files.job_folder(job_id)
    folder.mkdir(parents=True)
    (folder / "x.ndjson").write_bytes(b"{}\n")
    runner.sweep_expired()  # kept 0 s: expired at once
    assert jobs.jobs.get(job_id) is None and not folder.exists()


def test_a_live_lease_is_respected_and_a_dead_owner_is_not(jobs: FhirService) -> None:
    job_id = submit(jobs, Flaky(failures=0))
    lease = 60 * 1_000_000
    held = jobs.jobs.claim("elsewhere:1:x", ["flaky"], now_us(), lease)
    assert held is not None and held.id == job_id
    assert jobs.jobs.claim(worker_name(), ["flaky"], now_us(), lease) is None  # held
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    owner = f"{worker_name().split(':')[0]}:{dead}:x"
    assert owner_gone(owner) and not owner_gone(worker_name())
    assert not owner_gone(f"{worker_name().split(':')[0]}:{os.getppid()}:x")
    with writing(jobs.jobs.repository) as session:
        session.execute("UPDATE job SET owner = ? WHERE id = ?", (owner, job_id))
    taken = jobs.jobs.claim(worker_name(), ["flaky"], now_us(), lease)
    assert taken is not None and taken.id == job_id and taken.attempts == 2


def test_a_worker_that_lost_its_job_stops_at_its_next_checkpoint(jobs: FhirService) -> None:
    job_id = submit(jobs, Flaky(failures=0))
    first = worker_name()
    job = jobs.jobs.claim(first, ["flaky"], now_us(), 10**9)
    assert job is not None
    assert jobs.jobs.cancel(job_id, now_us())
    from hygeia.server.extensions import JobStopped
    from hygeia.server.jobs.run import JobRun, JobTiming

    with pytest.raises(JobStopped):
        Flaky(0).run(JobRun(jobs, job, first, JobTiming()))


def test_a_claim_with_no_free_job_waits_for_no_writer(jobs: FhirService) -> None:
    """An idle job runner polls twice a second in every serving process: finding nothing
    to take must not queue for the writer (SQLite's writer's turn; PostgreSQL skips
    locked rows anyway)."""
    job_id = submit(jobs, Flaky(failures=0))
    lease = 60 * 1_000_000
    assert jobs.jobs.claim("elsewhere:1:x", ["flaky"], now_us(), lease) is not None
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with writing(jobs.jobs.repository) as session:
            session.execute("UPDATE job SET updated = updated WHERE id = ?", (job_id,))
            holding.set()
            done.wait(5)

    writer = threading.Thread(target=hold)
    writer.start()
    try:
        assert holding.wait(5)
        began = time.monotonic()
        assert jobs.jobs.claim(worker_name(), ["flaky"], now_us(), lease) is None
        assert time.monotonic() - began < 2
    finally:
        done.set()
        writer.join()
