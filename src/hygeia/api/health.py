"""``/health`` and ``/ready``: the probes of orchestrators and load balancers.

Both live outside ``/fhir`` on purpose: they are not FHIR interactions, so they
are never audited and never ask for a token, even with ``--auth`` (a probe has
no credentials, and what they reveal is only "up" or "not ready, because ...").

- ``/health`` (liveness) answers 200 whenever the process can answer at all; it
  touches nothing else, so a slow database never gets a healthy process restarted.
- ``/ready`` (readiness) answers 200 only when the database answers within
  ``READY_TIMEOUT`` seconds, records the schema version this Hygeia writes
  with no migration of any stream pending (store/migrations), and the
  background job runner is running; otherwise 503 with an OperationOutcome that
  says which check failed.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from hygeia.fhir.outcome import Issue, operation_outcome
from hygeia.server import FhirService
from hygeia.store import SCHEMA_VERSION, pending_of

log = logging.getLogger("hygeia.api")
HEALTH_PATH = "/health"
READY_PATH = "/ready"
PROBE_PATHS = frozenset({HEALTH_PATH, READY_PATH})
READY_TIMEOUT = 2.0  # seconds: a probe that waits longer than this is itself a failure
_JSON = "application/json"
# (status, headers, body, media type), as the auth endpoints answer
Answer = tuple[int, dict[str, str], bytes, str]
_NO_STORE = {"Cache-Control": "no-store"}


def probe_answer(service: FhirService, environ: dict[str, Any]) -> Answer | None:
    """The answer to a probe, or None when the path is not ``/health`` or ``/ready``."""
    path = environ.get("PATH_INFO", "")
    if path not in PROBE_PATHS:
        return None
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        return _outcome(405, Issue("not-supported", f"{path} answers GET and HEAD only."))
    if path == HEALTH_PATH:
        return 200, dict(_NO_STORE), orjson.dumps({"status": "pass"}), _JSON
    problems = readiness_problems(service)
    if problems:
        return _outcome(503, *problems)
    return 200, dict(_NO_STORE), orjson.dumps(
        {"status": "pass", "schemaVersion": SCHEMA_VERSION, "jobs": "running"}), _JSON


def readiness_problems(service: FhirService) -> list[Issue]:
    """What keeps this process from serving requests well: empty when it is ready."""
    problems = []
    database = _database_problem(service)
    if database is not None:
        problems.append(database)
    runner = service.runner
    if runner is None or not runner.alive:
        problems.append(Issue("transient", "The background job runner is not running, so "
                              "bulk export, import and reindex jobs would not progress.",
                              expression="jobs"))
    return problems


def _database_problem(service: FhirService) -> Issue | None:
    try:
        with service.request_limits():
            found = service.repository.recorded_versions(READY_TIMEOUT)
    except Exception as error:  # any failure to reach the database means not ready
        log.warning("readiness: the database did not answer: %s", error)
        return Issue("transient", "The database did not answer within "
                     f"{READY_TIMEOUT:g} s ({type(error).__name__}).", expression="database")
    core = found.get("core")
    if core != SCHEMA_VERSION:
        return Issue("transient", f"The database records schema version {core}, but this "
                     f"Hygeia uses version {SCHEMA_VERSION}.", expression="database.schema")
    pending = [stream.describe() for stream in pending_of(found)]
    if pending:  # a pillar registered after the database opened, or a restored backup
        return Issue("transient", f"The database needs schema migrations ({', '.join(pending)})"
                     "; run `hygeia db migrate`.", expression="database.schema")
    return None


def _outcome(status: int, *issues: Issue) -> Answer:
    headers = dict(_NO_STORE)
    if status == 503:
        headers["Retry-After"] = "5"
    return status, headers, orjson.dumps(operation_outcome(issues)), "application/fhir+json"
