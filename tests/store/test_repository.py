"""Repository compliance suite: every backend must pass the same tests."""

from __future__ import annotations

import threading
import time

import pytest

from hygeia.fhir.search.query import IdClause, Query, parse_query
from hygeia.fhir.search.rows import IndexRows
from hygeia.store import HistoryQuery, Repository, StoredVersion


def version(id: str, number: int, *, deleted: bool = False, at: int = 1_000,
            type: str = "Patient") -> StoredVersion:
    content = None if deleted else f'{{"resourceType":"{type}","id":"{id}"}}'.encode()
    return StoredVersion(type, id, number, at + number, deleted, content,
                         "DELETE" if deleted else "PUT", 0)


def test_put_then_read_current_and_versions(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("a", 1), IndexRows(tokens=[("identifier", "s", "1")]))
        session.put(version("a", 2), IndexRows(tokens=[("identifier", "s", "2")]))
    with repository.reader() as session:
        current = session.current("Patient", "a")
        assert current is not None and current.version == 2 and not current.deleted
        first = session.version("Patient", "a", 1)
        assert first is not None and first.content == b'{"resourceType":"Patient","id":"a"}'
        assert session.version("Patient", "a", 3) is None
        assert session.current("Patient", "missing") is None


def test_a_read_by_key_sees_its_own_writes_and_leaves_the_others_buffered(
        repository: Repository) -> None:
    def token() -> IndexRows:  # one index row per version: rows_written shows a flush
        return IndexRows(tokens=[("identifier", "s", "1")])

    with repository.transaction() as session:
        session.put(version("a", 1), token())
        assert session.current("Patient", "b") is None
        assert session.heads([("Patient", "b")]) == {}
        assert session.rows_written == 0  # "a" is still buffered: one flush for all
        session.put(version("b", 1), token())
        current = session.current("Patient", "a")
        assert current is not None and current.version == 1
        assert session.rows_written > 0  # reading "a" wrote "a" and "b" first
        assert session.version("Patient", "b", 1) is not None
        session.put(version("a", 2), token())
        assert session.heads([("Patient", "a"), ("Patient", "b")])[("Patient", "a")].version == 2
        session.put(version("c", 1), token())
        assert session.version("Patient", "c", 1) is not None
    with repository.reader() as session:
        assert [session.current("Patient", id) is not None for id in "abc"] == [True] * 3


def test_a_search_sees_its_types_writes_and_leaves_other_types_buffered(
        repository: Repository) -> None:
    def token() -> IndexRows:  # one index row per version: rows_written shows a flush
        return IndexRows(tokens=[("identifier", "s", "1")])

    with repository.transaction() as session:
        session.put(version("o", 1, type="Group"), token())
        page = session.search(Query("Patient", [IdClause(("a",))]))
        assert page.matches == [] and session.rows_written == 0  # the Group stays buffered
        session.put(version("a", 1), token())
        page = session.search(Query("Patient", [IdClause(("a",))]))
        assert [m.id for m in page.matches] == ["a"]  # a Patient buffered: flushed first
        assert session.rows_written > 0
        session.put(version("p", 1, type="Group"), token())
        written = session.rows_written
        chained = parse_query("Patient", [("general-practitioner.name", "x")],
                              registry=session.registry)
        session.search(chained)  # a chain reads other types' rows: everything is written
        assert session.rows_written > written
    with repository.reader() as session:
        assert session.current("Group", "p") is not None


def test_index_rows_follow_the_current_version(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("a", 1), IndexRows(tokens=[("identifier", "s", "old")]))
        session.put(version("a", 2), IndexRows(tokens=[("identifier", "s", "new")]))

    def ids(code: str) -> list[str]:
        query = parse_query("Patient", [("identifier", f"s|{code}")])
        with repository.reader() as session:
            return session.find_ids(query)

    assert (ids("old"), ids("new")) == ([], ["a"])
    with repository.transaction() as session:
        session.put(version("a", 3, deleted=True), IndexRows())
    assert ids("new") == []


def test_exception_rolls_back_everything(repository: Repository) -> None:
    with pytest.raises(RuntimeError), repository.transaction() as session:
        session.put(version("x", 1), IndexRows(tokens=[("identifier", "s", "x")]))
        session.put(version("y", 1), IndexRows())
        raise RuntimeError("boom")
    with repository.reader() as session:
        assert session.current("Patient", "x") is None
        assert session.history(HistoryQuery()) == []


def test_search_excludes_deleted_and_other_types(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("a", 1), IndexRows())
        session.put(version("b", 1), IndexRows())
        session.put(version("b", 2, deleted=True), IndexRows())
        session.put(version("a", 1, type="Group"), IndexRows())
    with repository.reader() as session:
        page = session.search(Query("Patient", [IdClause(("a", "b"))]))
    assert page.total == 1 and [m.id for m in page.matches] == ["a"]


def test_history_filters_and_cursor(repository: Repository) -> None:
    with repository.transaction() as session:
        for number in (1, 2, 3):
            session.put(version("h", number, at=10_000), IndexRows())
        session.put(version("o", 1, at=50_000, type="Organization"), IndexRows())
    with repository.reader() as session:
        all_versions = session.history(HistoryQuery())
        assert [(v.resource_type, v.version) for v in all_versions] == [
            ("Organization", 1), ("Patient", 3), ("Patient", 2), ("Patient", 1)]
        since = session.history(HistoryQuery("Patient", "h", since=10_002))
        assert [v.version for v in since] == [3, 2]
        at = session.history(HistoryQuery("Patient", "h", at=(10_002, 10_003)))
        assert [v.version for v in at] == [2]
        page = session.history(HistoryQuery(count=2))
        rest = session.history(HistoryQuery(count=2, before_seq=page[-1].seq))
        assert [v.version for v in page + rest] == [1, 3, 2, 1]


def test_lock_serialises_writers(repository: Repository) -> None:
    """Two transactions taking the same lock never overlap (conditional-create safety)."""
    inside: list[str] = []

    def worker(name: str) -> None:
        with repository.transaction() as session:
            session.lock("Patient?identifier=same")
            inside.append(f"{name}-in")
            time.sleep(0.05)
            inside.append(f"{name}-out")

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside[0][0] == inside[1][0] and inside[2][0] == inside[3][0]


def test_lock_all_serialises_writers_sharing_any_key(repository: Repository) -> None:
    """A writer holding several locks at once (lock_all, one statement on PostgreSQL)
    keeps out a writer that takes any one of them."""
    inside: list[str] = []

    def worker(name: str, keys: list[str]) -> None:
        with repository.transaction() as session:
            session.lock_all(keys)
            inside.append(f"{name}-in")
            time.sleep(0.05)
            inside.append(f"{name}-out")

    threads = [threading.Thread(target=worker, args=("a", ["k1", "k2", "k3"])),
               threading.Thread(target=worker, args=("b", ["k3"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside[0][0] == inside[1][0] and inside[2][0] == inside[3][0]


def test_readers_see_a_snapshot_while_a_writer_works(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("s", 1), IndexRows())
    with repository.reader() as reader:
        before = reader.current("Patient", "s")
        done = threading.Event()

        def write() -> None:
            with repository.transaction() as session:
                session.put(version("s", 2), IndexRows())
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert done.wait(10), "a reader blocked the writer"
        after = reader.current("Patient", "s")
        thread.join()
    assert before is not None and after is not None
    assert (before.version, after.version) == (1, 1)  # one consistent snapshot
    with repository.reader() as reader:
        latest = reader.current("Patient", "s")
        assert latest is not None and latest.version == 2


def test_pool_usage_counts_lent_and_waiting_connections(repository: Repository) -> None:
    """What ``/metrics`` reports as the database pool: hold every connection, and one
    more request waits."""
    idle = repository.pool_usage()
    assert idle.size >= 1 and idle.in_use == 0 and idle.waiting == 0
    release = threading.Event()
    lent = threading.Semaphore(0)

    def hold_a_reader() -> None:
        with repository.reader():
            lent.release()
            release.wait(10)

    # on PostgreSQL the pool opens connections on demand, up to its maximum
    holders = [threading.Thread(target=hold_a_reader) for _ in range(idle.size + 8)]
    for thread in holders:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while repository.pool_usage().waiting == 0:
            assert time.monotonic() < deadline, repository.pool_usage()
            time.sleep(0.01)
        busy = repository.pool_usage()
        # every reader is lent (SQLite's size also counts its writer, idle here)
        assert 1 <= busy.in_use <= busy.size and busy.waiting >= 1, busy
    finally:
        release.set()
        for thread in holders:
            thread.join()
    deadline = time.monotonic() + 5  # psycopg_pool may take returned ones back in a worker
    while repository.pool_usage().in_use > 0:
        assert time.monotonic() < deadline, repository.pool_usage()
        time.sleep(0.01)


def test_lock_all_serialises_writers_on_any_shared_key(repository: Repository) -> None:
    """Two transactions locking overlapping key sets (in any order) never overlap."""
    inside: list[str] = []

    def worker(name: str, keys: list[str]) -> None:
        with repository.transaction() as session:
            session.lock_all(keys)
            inside.append(f"{name}-in")
            time.sleep(0.05)
            inside.append(f"{name}-out")

    threads = [threading.Thread(target=worker, args=("a", ["k1", "k2", "k3", "k2"])),
               threading.Thread(target=worker, args=("b", ["k3", "k9"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside[0][0] == inside[1][0] and inside[2][0] == inside[3][0]
    with repository.transaction() as session:
        session.lock_all([])  # nothing to lock: no statement, no error
