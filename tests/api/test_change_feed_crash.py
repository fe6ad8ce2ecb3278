"""A serving process killed (SIGKILL) while its consumers work through the change feed
resumes after a restart: the transactional consumer handles every event exactly once,
in order; the at-least-once consumer every event at least once."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest

from hygeia.store import feed_position, open_repository
from hygeia.store.plain_sql import reading
from tests.conftest import ServerProcess

PATIENTS = 100


def _bundle(start: int) -> dict[str, object]:
    return {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": f"P{n}"}]},
         "request": {"method": "POST", "url": "Patient"}} for n in range(start, start + 10)]}


def _log(folder: Path) -> list[int]:
    path = folder / "log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _kill_mid_stream(server: ServerProcess, folder: Path) -> None:
    """SIGKILL the serving process a random moment after its consumers began."""
    deadline = time.monotonic() + 60
    while not (folder / "pid").exists():
        assert time.monotonic() < deadline, "the consumers never started"
        time.sleep(0.01)
    time.sleep(random.uniform(0.1, 0.4))
    os.kill(int((folder / "pid").read_text()), signal.SIGKILL)
    server.kill()
    (folder / "pid").unlink()
    # killed mid-stream: both consumers had events left
    assert len(set(_log(folder))) < PATIENTS and len(_seqs(server.db_url)[1]) < PATIENTS


def _wait_caught_up(url: str, names: tuple[str, ...]) -> None:
    with open_repository(url) as repository:
        deadline = time.monotonic() + 120
        while any(feed_position(repository, name) != repository.feed_horizon()
                  for name in names):
            assert time.monotonic() < deadline, "the consumers did not catch up"
            time.sleep(0.1)


def _seqs(url: str) -> tuple[list[int], list[int]]:
    """(Patient seqs, the seqs the Basic resources record, in the order they were written)."""
    with open_repository(url) as repository, reading(repository) as session:
        patients = [int(row[0]) for row in session.execute(
            "SELECT seq FROM resource_version WHERE res_type = 'Patient' ORDER BY seq")]
        seen = [int(orjson.loads(bytes(row[0]))["identifier"][0]["value"])
                for row in session.execute("SELECT content FROM resource_version "
                                           "WHERE res_type = 'Basic' ORDER BY seq")]
    return patients, seen


def test_consumers_resume_after_sigkill_without_losing_or_repeating_events(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYGEIA_TEST_FEED_DIR", str(tmp_path))
    server = ServerProcess(database_url, module="tests.api.feed_server")
    try:
        for start in range(0, PATIENTS, 10):
            assert server.client.post("", json=_bundle(start)).status_code == 200
        (tmp_path / "go").touch()
        _kill_mid_stream(server, tmp_path)
        server = ServerProcess(database_url, module="tests.api.feed_server")
        _kill_mid_stream(server, tmp_path)
        server = ServerProcess(database_url, module="tests.api.feed_server")
        _wait_caught_up(database_url, ("crash-tally", "crash-log"))
    finally:
        server.stop()
    patients, seen = _seqs(database_url)
    assert len(patients) == PATIENTS
    assert seen == patients  # exactly once, in commit order
    logged = _log(tmp_path)
    assert set(logged) == set(patients)  # at least once
    assert len(logged) < 2 * PATIENTS
