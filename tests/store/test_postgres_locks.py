"""PostgreSQL sessions send a ``lock_with_next`` lock with the statement after it: one
round trip for both, and the lock still held before that statement runs."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository, StoredVersion

pytestmark = pytest.mark.postgres


def patient(id: str, number: int = 1) -> StoredVersion:
    content = f'{{"resourceType":"Patient","id":"{id}"}}'.encode()
    return StoredVersion("Patient", id, number, 1_000 + number, False, content, "PUT", 0)


class RoundTrips:
    """Counts the server's ReadyForQuery messages (one a round trip) in libpq's trace
    of ``session``'s connection."""

    def __init__(self, session: Any, path: str) -> None:
        self.pgconn = session.connection.pgconn
        self.path = path
        self.file = open(path, "wb")  # noqa: SIM115 (closed by traced)
        self.pgconn.trace(self.file.fileno())

    @property
    def count(self) -> int:
        self.pgconn.untrace()  # flushes libpq's buffer
        with open(self.path, "rb") as traced_so_far:
            text = traced_so_far.read().decode()
        self.pgconn.trace(self.file.fileno())
        return sum(1 for line in text.splitlines()
                   if "\tB\t" in line and "ReadyForQuery" in line)


@contextmanager
def traced(session: Any) -> Iterator[RoundTrips]:
    with tempfile.TemporaryDirectory() as folder:
        trips = RoundTrips(session, f"{folder}/trace")
        try:
            yield trips
        finally:
            trips.pgconn.untrace()
            trips.file.close()



@contextmanager
def every_trip(repository: Repository, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[list[RoundTrips]]:
    """The round trips of each connection borrowed from the pool meanwhile, from the
    moment it is borrowed (so a BEGIN sent before the session is handed out counts)."""
    pool = repository._pool  # type: ignore[attr-defined]
    borrow = pool.connection
    traces: list[RoundTrips] = []

    @contextmanager
    def traced_connection(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with borrow(*args, **kwargs) as connection, tempfile.TemporaryDirectory() as folder:
            trips = RoundTrips(type("Borrowed", (), {"connection": connection})(),
                               f"{folder}/trace")
            traces.append(trips)
            try:
                yield connection
            finally:
                trips.counted = trips.count  # type: ignore[attr-defined]
                trips.pgconn.untrace()
                trips.file.close()

    monkeypatch.setattr(pool, "connection", traced_connection)
    yield traces
    monkeypatch.undo()


def test_a_lock_and_the_read_after_it_are_one_round_trip(
        postgres_repository: Repository) -> None:
    with postgres_repository.transaction() as session, traced(session) as trips:
        session.lock_with_next(["a"])
        session.lock_with_next(["c", "b"])
        assert trips.count == 0  # nothing sent yet
        assert session.heads([("Patient", "x")]) == {}
        assert trips.count == 1  # the locks went with the read
        session.lock("a")  # held already: nothing to send
        session.lock_all(["b", "c"])
        assert trips.count == 1
        session.lock("d")  # lock itself is taken when it returns, as ever
        assert trips.count == 2


def held_advisory_locks(url: str, pid: int) -> int:
    """How many advisory locks the backend ``pid`` holds, seen from another connection."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND granted AND pid = %s", (pid,)).fetchone()
        return int(row[0]) if row else 0


def test_a_lock_nothing_follows_is_taken_before_commit(
        postgres_repository: Repository) -> None:
    url = postgres_repository.url  # type: ignore[attr-defined]
    with postgres_repository.transaction() as session:
        pid = session.connection.info.backend_pid  # type: ignore[attr-defined]
        session.lock_with_next(["only", "these"])
        session.flush()  # what the transaction's end does before it commits
        assert held_advisory_locks(url, pid) == 2


def test_a_lock_sent_with_a_read_still_keeps_the_second_writer_waiting(
        postgres_repository: Repository) -> None:
    """The second transaction's read, sent with its lock, runs only once the first
    transaction committed: it sees the first one's write."""
    first_locked, seen = threading.Event(), []

    def second() -> None:
        first_locked.wait(10)
        with postgres_repository.transaction() as session:
            session.lock_with_next(["the same key"])
            seen.append(session.heads([("Patient", "p")]))

    thread = threading.Thread(target=second)
    thread.start()
    with postgres_repository.transaction() as session:
        session.lock_with_next(["the same key"])
        session.heads([("Patient", "p")])  # sends the lock
        first_locked.set()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the lock
        session.put(patient("p"), IndexRows())
    thread.join(10)
    assert [list(heads) for heads in seen] == [[("Patient", "p")]]


def test_a_reader_begins_in_one_round_trip_repeatable_and_read_only(
        postgres_repository: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    with every_trip(postgres_repository, monkeypatch) as traces, \
            postgres_repository.reader() as session:
        assert traces[0].count == 1
        row = session.execute("SELECT current_setting('transaction_isolation'), "
                              "current_setting('transaction_read_only')").fetchone()
    assert tuple(row) == ("repeatable read", "on")
