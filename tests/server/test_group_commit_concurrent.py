"""Group commit with several committers (PostgreSQL): batches run side by side on
connections of their own; the same key is never in two open batches; every committed
version reaches the change feed once, in seq order."""

from __future__ import annotations

import threading
import time

import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.server.group_commit import GroupCommit
from hygeia.store import Repository, Session, StoredVersion

pytestmark = pytest.mark.postgres


def patient(id: str) -> StoredVersion:
    return StoredVersion("Patient", id, 1, 1_000, False,
                         f'{{"resourceType":"Patient","id":"{id}"}}'.encode(), "PUT", 0)


def test_postgresql_runs_several_writers_at_once() -> None:
    from hygeia.store.postgres.repository import PostgresRepository
    from hygeia.store.sqlite.repository import SqliteRepository

    assert PostgresRepository.concurrent_writers > 1
    assert SqliteRepository.concurrent_writers == 1  # its one writer


def test_batches_run_at_once_on_several_committers(
        postgres_repository: Repository) -> None:
    """Two units that each wait for the other to have started can only both finish when
    their transactions are open at the same time (one committer would time out)."""
    commits = GroupCommit(postgres_repository, name="test-commit", committers=2)
    barrier = threading.Barrier(2, timeout=10)
    results: dict[str, object] = {}
    started = threading.Event()

    def submit(id: str) -> None:
        def work(session: Session) -> str:
            session.put(patient(id), IndexRows())
            started.set()
            barrier.wait()  # BrokenBarrierError when the other unit is not running
            return id
        try:
            results[id] = commits.run(work, key=id)
        except threading.BrokenBarrierError as error:
            results[id] = error

    commits.start()
    try:
        threads = [threading.Thread(target=submit, args=(id,)) for id in ("a", "b")]
        # "b" is queued only once "a"'s batch is open: queued together, one committer
        # would take both into one batch
        threads[0].start()
        assert started.wait(10)
        threads[1].start()
        for thread in threads:
            thread.join(30)
    finally:
        commits.stop()
    assert results == {"a": "a", "b": "b"}
    assert (commits.batches, commits.units) == (2, 2)
    with postgres_repository.reader() as session:
        assert session.current("Patient", "a") is not None
        assert session.current("Patient", "b") is not None


def test_a_key_is_never_in_two_open_batches(postgres_repository: Repository) -> None:
    """The same message twice at once: the second waits for the first's commit even
    though another committer is free, and then sees what the first stored."""
    commits = GroupCommit(postgres_repository, name="test-commit", committers=3)
    first_running, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first(session: Session) -> None:
        session.put(patient("same"), IndexRows())
        first_running.set()
        release.wait(10)

    def second(session: Session) -> None:
        seen.append(session.current("Patient", "same") is not None)

    commits.start()
    try:
        one = threading.Thread(target=commits.run, args=(first,), kwargs={"key": "msg"})
        one.start()
        assert first_running.wait(10)
        two = threading.Thread(target=commits.run, args=(second,), kwargs={"key": "msg"})
        two.start()
        two.join(0.5)
        assert two.is_alive() and not seen  # held back, not run beside the first
        assert commits.queued == 1
        release.set()
        one.join(10)
        two.join(10)
    finally:
        commits.stop()
    assert seen == [True]


def test_stop_finishes_what_is_queued(postgres_repository: Repository) -> None:
    commits = GroupCommit(postgres_repository, name="test-commit", committers=3)
    gate = threading.Event()
    done: list[str] = []

    def unit(id: str) -> None:
        def work(session: Session) -> None:
            gate.wait(10)
            session.put(patient(id), IndexRows())
        commits.run(work)
        done.append(id)

    commits.start()
    threads = [threading.Thread(target=unit, args=(f"q{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    stopper = threading.Thread(target=commits.stop)
    stopper.start()
    gate.set()
    stopper.join(30)
    for thread in threads:
        thread.join(10)
    assert sorted(done) == sorted(f"q{n}" for n in range(8))


def test_concurrent_batches_reach_the_feed_once_in_order(
        postgres_repository: Repository) -> None:
    """Batches commit out of seq order on several committers; a reader following the
    feed meanwhile still sees every version exactly once, in seq order."""
    commits = GroupCommit(postgres_repository, name="test-commit", committers=3)
    ids = [f"t{thread}-{n}" for thread in range(6) for n in range(25)]
    stopping = threading.Event()
    read: list[tuple[int, str]] = []

    def follow() -> None:
        after = 0
        while True:
            last_round = stopping.is_set()
            batch = postgres_repository.changes(after, limit=50)
            read.extend((event.seq, event.id) for event in batch.events)
            after = batch.position
            if last_round and not batch.events:
                return
            time.sleep(0.005)

    def writer(thread: int) -> None:
        for n in range(25):
            id = f"t{thread}-{n}"
            commits.run(lambda session, id=id: session.put(patient(id), IndexRows()))

    commits.start()
    follower = threading.Thread(target=follow)
    follower.start()
    try:
        writers = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(60)
    finally:
        commits.stop()
        stopping.set()
        follower.join(60)
    seqs = [seq for seq, _ in read]
    assert seqs == sorted(seqs)
    assert sorted(id for _, id in read) == sorted(ids)  # each once
    assert commits.units == len(ids)


def held_advisory_locks(url: str, pid: int) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND granted AND pid = %s", (pid,)).fetchone()
        return int(row[0]) if row else 0


@pytest.mark.parametrize("reads", [True, False])
def test_a_batch_holds_its_locks_before_its_units_run(
        postgres_repository: Repository, reads: bool) -> None:
    """The batch's locks go with ``prepare``'s first read (one round trip); when prepare
    reads nothing, they are sent before the units run all the same."""
    url = postgres_repository.url  # type: ignore[attr-defined]
    held: list[int] = []

    def prepare(session: Session, hints: list[object]) -> None:
        if reads:
            session.heads([("Patient", "x")])

    def work(session: Session) -> int:
        pid = session.connection.info.backend_pid  # type: ignore[attr-defined]
        held.append(held_advisory_locks(url, pid))
        return 0

    commits = GroupCommit(postgres_repository, name="test-commit", prepare=prepare)
    commits.start()
    try:
        threads = [threading.Thread(target=commits.run, args=(work,),
                                    kwargs={"locks": [f"lock-{n}"]}) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        commits.stop()
    assert commits.units == 6 and held
    # a unit that ran in a batch of several (prepared) or alone sees all its batch's locks
    assert all(count >= 1 for count in held)
