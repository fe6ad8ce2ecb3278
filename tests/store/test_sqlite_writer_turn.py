"""SQLite's writer's turn across processes (store/sqlite/writer_turn.py): real processes
write one database at once and nothing is lost or doubled; a waiting writer wakes when
the holder commits; a process killed while holding the turn leaves it free."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import StoredVersion
from hygeia.store.sqlite.repository import SqliteRepository
from hygeia.store.sqlite.writer_turn import LOCK_SUFFIX, WriterTurn

ROOT = Path(__file__).resolve().parents[2]

# a writer process: PREFIX COUNT -> COUNT one-version transactions of its own Patients
WRITER = textwrap.dedent("""
    import sys
    from hygeia.fhir.search.rows import IndexRows
    from hygeia.store import StoredVersion
    from hygeia.store.sqlite.repository import SqliteRepository
    repository = SqliteRepository(sys.argv[1])
    prefix, count = sys.argv[2], int(sys.argv[3])
    for number in range(count):
        id = f"{prefix}-{number}"
        with repository.transaction() as session:
            session.put(StoredVersion("Patient", id, 1, 1_000, False,
                        ('{"resourceType":"Patient","id":"%s"}' % id).encode(), "PUT", 0),
                        IndexRows())
    repository.close()
""")

# holds the turn inside a transaction, says so on stdout, then waits for a line on stdin
# (or, with "fork", first forks a child that outlives it)
HOLDER = textwrap.dedent("""
    import os, sys, time
    from hygeia.store.sqlite.repository import SqliteRepository
    repository = SqliteRepository(sys.argv[1])
    with repository.transaction() as session:
        if sys.argv[2:] == ["fork"] and os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        print("holding", flush=True)
        sys.stdin.readline()
        print(time.monotonic(), flush=True)  # the moment before COMMIT and release
    print("released", flush=True)
    sys.stdin.readline()
""")


def _python(script: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, text=True,
                            stdin=stdin, stdout=subprocess.PIPE)


def hold_the_turn(path: Path, *extra: str) -> subprocess.Popen[str]:
    """Another process, inside a write transaction on ``path`` until sent a line."""
    process = _python(HOLDER, str(path), *extra, stdin=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == "holding\n"
    return process


def _turn_is_free(path: Path) -> bool:
    descriptor = os.open(str(path) + LOCK_SUFFIX, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)


def _patient(id: str) -> StoredVersion:
    return StoredVersion("Patient", id, 1, 1_000, False,
                         f'{{"resourceType":"Patient","id":"{id}"}}'.encode(), "PUT", 0)


def test_processes_writing_at_once_lose_and_double_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SqliteRepository(path).close()  # laid out once, as a server's start does
    writers = [_python(WRITER, str(path), f"w{number}", "150") for number in range(3)]
    local = SqliteRepository(path)
    try:
        for number in range(150):  # this process writes too, between the others
            with local.transaction() as session:
                session.put(_patient(f"local-{number}"), IndexRows())
        assert [writer.wait(120) for writer in writers] == [0, 0, 0]
        with local.reader() as session:
            rows = session.connection.execute(
                "SELECT seq, res_id FROM resource_version ORDER BY seq").fetchall()
            current = session.connection.execute("SELECT COUNT(*) FROM resource").fetchone()
    finally:
        local.close()
    assert len(rows) == 600 and len({id for _, id in rows}) == 600 and current == (600,)
    assert [seq for seq, _ in rows] == list(range(1, 601))  # the feed's order: no gaps


def test_a_waiting_writer_begins_as_the_holder_commits(tmp_path: Path) -> None:
    """SQLite's busy handler alone polls (sleeps of up to 100 ms): the turn wakes the
    waiter when the other process lets go."""
    path = tmp_path / "shared.db"
    repository = SqliteRepository(path)
    try:
        latenesses = []
        for attempt in range(3):
            holder = hold_the_turn(path)
            assert holder.stdin is not None and holder.stdout is not None
            began: list[float] = []

            def write(attempt: int = attempt, began: list[float] = began) -> None:
                with repository.transaction() as session:
                    began.append(time.monotonic())
                    session.put(_patient(f"after-{attempt}"), IndexRows())

            waiter = threading.Thread(target=write)
            waiter.start()
            time.sleep(0.35)  # the waiter is well into SQLite's longer sleeps by now
            assert not began
            holder.stdin.write("commit\n")
            holder.stdin.flush()
            released_before = float(holder.stdout.readline())
            waiter.join(30)
            latenesses.append(began[0] - released_before)
            holder.stdin.write("exit\n")
            holder.stdin.flush()
            holder.wait(30)
        assert repository.write_turn().waits == 3
        assert min(latenesses) < 0.03, latenesses
    finally:
        repository.close()


def test_a_process_killed_holding_the_turn_leaves_it_free(tmp_path: Path) -> None:
    """Even when it forked a child that lives on (the child closes its copy of the
    lock file, or the kernel would keep the lock until the child exits)."""
    path = tmp_path / "shared.db"
    SqliteRepository(path).close()
    holder = hold_the_turn(path, "fork")
    try:
        assert not _turn_is_free(path)
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        assert _turn_is_free(path)
        repository = SqliteRepository(path)
        try:
            with repository.transaction() as session:
                session.put(_patient("after"), IndexRows())
        finally:
            repository.close()
    finally:
        holder.kill()
        holder.wait(30)


def test_a_writer_that_takes_no_turn_is_still_kept_out(tmp_path: Path) -> None:
    """An older Hygeia or the sqlite3 shell writes without the turn: BEGIN IMMEDIATE
    and the busy timeout still serialise the two."""
    path = tmp_path / "shared.db"
    repository = SqliteRepository(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO hygeia_schema VALUES (-1)")
        timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        timer.start()
        with repository.transaction() as session:
            session.put(_patient("meanwhile"), IndexRows())
            assert session.connection.execute(
                "SELECT COUNT(*) FROM hygeia_schema WHERE version = -1").fetchone() == (1,)
        timer.join()
    finally:
        other.close()
        repository.close()


def test_a_turn_held_too_long_fails_the_waiter_instead_of_hanging_it(tmp_path: Path) -> None:
    """A holder stopped in a debugger (here: a process that never lets go) makes a
    writer fail with SQLite's "database is locked" after the timeout, not wait forever."""
    path = tmp_path / "shared.db"
    SqliteRepository(path).close()
    holder = hold_the_turn(path)
    turn = WriterTurn(str(path), timeout=0.3)
    try:
        began = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"), turn:
            pass
        assert 0.3 <= time.monotonic() - began < 5
        assert not turn.held()
        holder.kill()
        holder.wait(30)
        with turn:  # freed by the holder's death: the same turn is taken at once
            assert turn.held()
    finally:
        turn.close()
        holder.kill()
        holder.wait(30)
