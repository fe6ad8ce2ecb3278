"""2,000 hostile requests per database through real HTTP: no 5xx, every error an
OperationOutcome, and memory in proportion.

The requests come from a seeded generator (tests/api/hostile.py), so a failure
names the request and reruns the same way; set HYGEIA_FUZZ_SEED to explore
other sequences and HYGEIA_FUZZ_COUNT to send more.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from tests.api.hostile import TIMED_OUT, Answer, HostileGenerator, HostileRequest, send
from tests.conftest import ServerProcess
from tests.helpers import patient

REQUESTS = int(os.environ.get("HYGEIA_FUZZ_COUNT", "2000"))
SEED = int(os.environ.get("HYGEIA_FUZZ_SEED", "20261206"))
MEMORY_HEADROOM_KB = 300 * 1024


def test_hostile_requests_get_outcomes_not_crashes(database_url: str) -> None:
    server = ServerProcess(database_url)
    try:
        ids = [server.client.post("Patient", json=patient(family=f"Fuzz{i}")).json()["id"]
               for i in range(3)]
        idle = _memory(server, "VmRSS")
        generator = HostileGenerator(SEED, f"127.0.0.1:{server.port}", ids)
        failures: list[str] = []
        for request in generator.requests(REQUESTS):
            if server.process.poll() is not None:
                failures.append(f"the server died before {request.describe()}")
                break
            if problem := _problem(request, send(server.port, request)):
                failures.append(problem)
        assert not failures, f"{len(failures)} bad answers, first ones:\n" + \
            "\n".join(failures[:10])
        assert server.client.get("metadata").status_code == 200, "the server stopped answering"
        peak = _memory(server, "VmHWM")
        assert peak <= idle + MEMORY_HEADROOM_KB, \
            f"peak memory {peak // 1024} MB against {idle // 1024} MB idle"
    finally:
        server.stop()


def _problem(request: HostileRequest, answer: Answer | None) -> str | None:
    """Why this answer is not acceptable, or None when it is."""
    if answer is None:
        return f"no answer to {request.describe()}"
    if answer.status == TIMED_OUT:
        return f"no answer within the timeout to {request.describe()}"
    if answer.status >= 500:
        return f"{answer.status} to {request.describe()}: {answer.body[:300]!r}"
    if answer.status < 400 or request.method == "HEAD":
        return None
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return f"{answer.status} without a JSON body to {request.describe()}: " \
            f"{answer.body[:200]!r}"
    if not isinstance(body, dict) or (body.get("resourceType") != "OperationOutcome" and \
            "error" not in body):  # /auth endpoints answer RFC 6749 errors
        return f"{answer.status} body is no OperationOutcome for {request.describe()}"
    if body.get("resourceType") == "OperationOutcome" and \
            not all(issue.get("diagnostics") for issue in body.get("issue", [])):
        return f"{answer.status} OperationOutcome without words for {request.describe()}"
    return None


def _memory(server: ServerProcess, field: str) -> int:
    """The field (kB) summed over the server's process tree (supervisor, workers, helpers)."""
    return sum(_status_kb(pid, field) for pid in _tree(server.process.pid))


def _tree(pid: int) -> list[int]:
    pids, index = [pid], 0
    while index < len(pids):
        for children in Path(f"/proc/{pids[index]}/task").glob("*/children"):
            pids.extend(int(child) for child in children.read_text().split())
        index += 1
    return pids


def _status_kb(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
