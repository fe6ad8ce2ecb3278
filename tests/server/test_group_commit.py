"""Group commit: units from many threads share transactions; a failing unit fails alone;
the locks units name are held before any of them runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.server.group_commit import GroupCommit
from hygeia.store import Repository, Session, StoredVersion
from hygeia.store.sqlite.repository import SqliteRepository
from tests.store.test_sqlite_writer_turn import hold_the_turn


def patient(id: str) -> StoredVersion:
    return StoredVersion("Patient", id, 1, 1_000, False,
                         f'{{"resourceType":"Patient","id":"{id}"}}'.encode(), "PUT", 0)


def test_units_commit_and_a_failing_unit_fails_alone(repository: Repository) -> None:
    commits = GroupCommit(repository, name="test-commit")
    commits.start()
    try:
        def good(id: str) -> str:
            def work(session: Session) -> str:
                session.put(patient(id), IndexRows())
                return id
            return work

        def bad(session: Session) -> str:
            session.put(patient("bad"), IndexRows())
            raise ValueError("refused")

        results: dict[str, object] = {}

        def submit(name: str) -> None:
            try:
                results[name] = commits.run(bad if name == "bad" else good(name),
                                            locks=[f"unit:{name}"])
            except ValueError as error:
                results[name] = error

        threads = [threading.Thread(target=submit, args=(name,))
                   for name in ("a", "b", "bad", "c")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        commits.stop()
    assert [results[name] for name in "abc"] == ["a", "b", "c"]
    assert isinstance(results["bad"], ValueError)
    with repository.reader() as session:
        assert [session.current("Patient", id) is not None for id in "abc"] == [True] * 3
        assert session.current("Patient", "bad") is None


def test_a_units_locks_are_held_before_it_runs(repository: Repository) -> None:
    """Another transaction taking one of a unit's locks waits until the unit's
    transaction commits (on SQLite every writer waits for the one writer anyway)."""
    if repository.__class__.__name__.startswith("Sqlite"):
        pytest.skip("SQLite's locks are its single writer")
    commits = GroupCommit(repository, name="test-commit")
    commits.start()
    order: list[str] = []
    started = threading.Event()

    def work(session: Session) -> None:
        started.set()
        time.sleep(0.3)  # holding the lock it named, not yet taken by the work itself
        order.append("unit")

    def other() -> None:
        started.wait(5)
        with repository.transaction() as session:
            session.lock("shared-key")
            order.append("other")

    try:
        thread = threading.Thread(target=other)
        thread.start()
        commits.run(work, locks=["shared-key"])
        thread.join()
    finally:
        commits.stop()
    assert order == ["unit", "other"]



def run_as_one_batch(commits: GroupCommit, submit: Callable[[str], None],
                     names: list[str]) -> None:
    """Submit ``names`` while the committer is held by another unit, so they queue and
    then share one batch."""
    gate = threading.Event()
    holder = threading.Thread(target=commits.run, args=(lambda _: gate.wait(30),))
    holder.start()
    time.sleep(0.2)  # the committer is inside the holder's unit
    threads = [threading.Thread(target=submit, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while commits.queued < len(names) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    for thread in (holder, *threads):
        thread.join(30)


def test_prepare_reads_for_a_whole_batch_and_a_failed_batch_runs_without_it(
        repository: Repository) -> None:
    """``prepare`` sees every unit's hint once per shared transaction, before the units
    run; when a unit fails, the others run again alone, without ``prepare``."""
    prepared: list[list[str]] = []
    commits = GroupCommit(repository, name="test-commit",
                          prepare=lambda session, hints: prepared.append(sorted(hints)))
    seen: dict[str, int] = {}  # unit -> how many prepares had run when it last ran
    results: dict[str, object] = {}

    def submit(name: str) -> None:
        def work(session: Session) -> str:
            seen[name] = len(prepared)
            if name == "bad":
                raise ValueError("refused")
            return name
        try:
            results[name] = commits.run(work, key=name, hint=name)
        except ValueError as error:
            results[name] = error

    commits.start()
    try:
        run_as_one_batch(commits, submit, ["a", "b"])
        run_as_one_batch(commits, submit, ["bad", "c"])
    finally:
        commits.stop()
    assert prepared == [["a", "b"], ["bad", "c"]]  # single-unit batches: no prepare
    assert seen["a"] == seen["b"] == 1
    assert results["c"] == "c" and isinstance(results["bad"], ValueError)


def test_units_waiting_during_a_commit_share_the_next_one(repository: Repository) -> None:
    """The units that queue while one transaction runs go into the next one together:
    one commit (one fsync) for all of them, on either database."""
    commits = GroupCommit(repository, name="test-commit")
    running, release = threading.Event(), threading.Event()

    def first(session: Session) -> None:
        session.put(patient("first"), IndexRows())
        running.set()
        release.wait(10)

    def later(id: str) -> None:
        commits.run(lambda session: session.put(patient(id), IndexRows()))

    commits.start()
    try:
        threads = [threading.Thread(target=commits.run, args=(first,))]
        threads[0].start()
        assert running.wait(10)
        threads += [threading.Thread(target=later, args=(f"p{n}",)) for n in range(7)]
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 10
        while commits.queued < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for thread in threads:
            thread.join()
    finally:
        commits.stop()
    assert (commits.batches, commits.units) == (2, 8)
    with repository.reader() as session:
        assert all(session.current("Patient", f"p{n}") is not None for n in range(7))


def test_units_waiting_for_another_process_share_one_transaction(tmp_path: Path) -> None:
    """SQLite: while another process writes, the committer waits for the writer's turn
    with its first unit, and the units arriving meanwhile join that unit's transaction
    (before, it began that unit's transaction alone and the others waited for the
    next one)."""
    repository = SqliteRepository(tmp_path / "shared.db")
    holder = hold_the_turn(tmp_path / "shared.db")
    commits = GroupCommit(repository, name="test-commit")
    commits.start()
    try:
        def submit(id: str) -> None:
            commits.run(lambda session: session.put(patient(id), IndexRows()))

        threads = [threading.Thread(target=submit, args=(f"p{n}",)) for n in range(7)]
        threads[0].start()
        time.sleep(0.2)  # the committer waits for the other process with p0
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 10
        while commits.queued < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder.stdin is not None
        holder.stdin.write("commit\nexit\n")
        holder.stdin.flush()
        for thread in threads:
            thread.join(30)
    finally:
        commits.stop()
        holder.wait(30)
        repository.close()
    assert (commits.batches, commits.units) == (1, 7)
