"""GC tuning for the long-running commands, and where a server keeps its runtime files."""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hygeia.cli.runtime import YOUNG_THRESHOLD, tune_garbage_collector
from tests.api.test_bulk_http import KICK_OFF, poll
from tests.cli.test_pillars import REPOSITORY
from tests.conftest import free_port


def test_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 1000  # the modules and tables imported so far
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@contextlib.contextmanager
def serving(cwd: Path, db_url: str, *extra: str) -> Iterator[httpx.Client]:
    """``hygeia serve`` as a user starts it, in ``cwd`` with no ``--files`` or key flag;
    a client of its FHIR base."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "hygeia.cli.main", "serve", "--port",
                                str(port), "--db", db_url, *extra], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/fhir/", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "the server exited"
                with contextlib.suppress(httpx.TransportError):
                    if client.get("metadata").status_code == 200:
                        break
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
            yield client
    finally:
        process.terminate()
        process.wait(10)


def test_runtime_files_are_made_beside_the_database_and_ignored_by_git(tmp_path: Path) -> None:
    """``--db sqlite:///DIR/other.db`` keeps its secret key (made by ``--auth``) and its
    job files in ``DIR/other-secret.key`` and ``DIR/other-files/``, nothing in the
    working directory; and the repository's ``.gitignore`` covers all three for any
    database name, so running a server in a clone never offers its data for a commit."""
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    data.mkdir()
    db_url = f"sqlite:///{data}/other.db"
    with serving(work, db_url, "--auth"):
        assert (data / "other-secret.key").is_file()
    with serving(work, db_url) as client:
        created = client.post("Patient", json={"resourceType": "Patient", "gender": "other"})
        assert created.status_code == 201, created.text
        started = client.get("$export", params={"_type": "Patient"}, headers=KICK_OFF)
        assert started.status_code == 202, started.text
        done = poll(client, started.headers["Content-Location"])
        assert done.status_code == 200, done.text
        assert [item["type"] for item in done.json()["output"]] == ["Patient"]
    files = sorted(path.relative_to(data) for path in (data / "other-files").rglob("*.ndjson"))
    assert files, list(data.iterdir())
    assert list(work.iterdir()) == []
    made = [Path("other.db"), Path("other-secret.key"), *files]
    runtime = made + [Path("data") / path for path in made]  # at the top and in a folder
    if not (REPOSITORY / ".git").exists():
        pytest.skip("not in a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--non-matching",
                              *map(str, runtime)], cwd=REPOSITORY, capture_output=True,
                             text=True, timeout=30)
    unmatched = [line for line in ignored.stdout.splitlines() if line.startswith("::")]
    assert ignored.stdout and not unmatched, ignored.stdout + ignored.stderr
