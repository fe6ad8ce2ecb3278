"""A pillar for tests whose one job ends the job runner's thread.

A job that raises what is not an ``Exception`` (``SystemExit`` here, as a
``KeyboardInterrupt`` or a library calling ``sys.exit`` would) passes the
runner's error handling and ends its thread, silently: the serving process goes
on answering requests, but no job progresses any more. ``/ready`` is what tells
an orchestrator (tests/api/test_probes_http.py installs this pillar to see it).
``POST [base]/$stop-job-runner`` queues that job.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.fhir.datetime import now_us
from hygeia.server import FhirRequest, FhirResponse
from hygeia.server.extensions import CliCommand, JobContext, Operation, OperationCall, PillarHost
from hygeia.store import Job

KIND = "stop-the-runner"


class StopTheRunner:
    """The job kind: its run ends the thread it runs on."""

    name = KIND

    def run(self, context: JobContext) -> dict[str, Any]:
        raise SystemExit("a job ended the runner's thread")

    def completed(self, job: Job, request: FhirRequest) -> FhirResponse:
        raise AssertionError("this job never completes")


def stop_job_runner(call: OperationCall) -> FhirResponse:
    call.host.jobs.submit(KIND, {}, now_us())
    call.host.wake_jobs()
    return FhirResponse(202, resource={"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational",
         "diagnostics": "A job that stops the job runner is queued."}]})


class RunnerStoppingPillar:
    name = "runner-stopping"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        """No flags."""

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        host.add_job_kind(StopTheRunner())
        host.add_operation(Operation("stop-job-runner", stop_job_runner,
                                     "urn:example:OperationDefinition:stop-job-runner",
                                     system=True, methods=("POST",)))

    def commands(self) -> Sequence[CliCommand]:
        return []

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        return []


PILLAR = RunnerStoppingPillar()
