"""GC tuning for the long-running commands, and where a server keeps its runtime files."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hygeia.cli.main import parse_arguments
from hygeia.cli.runtime import (
    SERVE_SWITCH_INTERVAL_MS,
    YOUNG_THRESHOLD,
    set_switch_interval,
    tune_garbage_collector,
)
from hygeia.cli.serving import ServeOptions, _serve_in_worker
from hygeia.server import Settings
from tests.api.test_bulk_http import KICK_OFF, poll
from tests.cli.test_cli import hygeia
from tests.cli.test_errors import single_error_line
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


def test_the_switch_interval_is_a_serve_option_in_milliseconds() -> None:
    """``--gil-switch-interval`` (or HYGEIA_GIL_SWITCH_INTERVAL) in milliseconds, the
    flag winning; ServeOptions, which every forked serving process applies, defaults
    to the same value as the flag."""
    assert parse_arguments(["serve"], {}).gil_switch_interval == SERVE_SWITCH_INTERVAL_MS
    assert parse_arguments(["serve", "--gil-switch-interval", "0.5"],
                           {}).gil_switch_interval == 0.5
    environ = {"HYGEIA_GIL_SWITCH_INTERVAL": "1"}
    assert parse_arguments(["serve"], environ).gil_switch_interval == 1.0
    assert parse_arguments(["serve", "--gil-switch-interval", "2"],
                           environ).gil_switch_interval == 2.0
    assert ServeOptions("sqlite://", Settings()).switch_interval_ms == \
        SERVE_SWITCH_INTERVAL_MS


@pytest.mark.parametrize("value", ["0", "-1", "1001"])
def test_a_switch_interval_out_of_range_is_one_error_line(tmp_path: Path, value: str) -> None:
    result = hygeia("serve", "--db", f"sqlite:///{tmp_path}/bad.db", "--port", "0",
                    "--gil-switch-interval", value)
    single_error_line(result, f"--gil-switch-interval {value}", "above 0, at most 1000")
    assert not (tmp_path / "bad.db").exists()


def test_setting_the_switch_interval_sets_the_interpreters() -> None:
    before = sys.getswitchinterval()
    try:
        set_switch_interval(0.5)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        set_switch_interval(5)
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)


def test_a_serving_process_applies_the_switch_interval_first() -> None:
    """A forked serving process (what ``--workers N`` starts N of) sets the interval
    before anything else it builds: with a database URL it cannot open, the process
    still reports the interval it runs with (0.5 ms, not this process's own)."""
    reading, writing = os.pipe()
    options = ServeOptions("nosuch://x", Settings(), switch_interval_ms=0.5)
    before = sys.getswitchinterval()
    pid = os.fork()
    if pid == 0:  # the child: a serving process whose repository fails to open
        try:
            _serve_in_worker(options, socket.socket(), {}, None, os.getppid(), first=True)
        except ValueError:
            os.write(writing, repr(sys.getswitchinterval()).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading, "rb") as answer:
        reported = answer.read()
    os.waitpid(pid, 0)
    assert float(reported) == pytest.approx(0.0005)
    assert sys.getswitchinterval() == before  # the parent is untouched


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
