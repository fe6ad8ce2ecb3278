"""The change feed on both databases: order, filters, cursors, and PostgreSQL's writers
that commit out of seq order."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import (
    ChangeEvent,
    FeedClaimLost,
    FeedLost,
    Repository,
    StoredVersion,
    advance_feed,
    as_sql,
    claim_feed,
    feed_cursors,
    feed_position,
    release_feed,
    writing,
)
from hygeia.store.feed import batch_of
from hygeia.store.postgres.feed import GATE


def version(id: str, number: int, *, deleted: bool = False, type: str = "Patient"
            ) -> StoredVersion:
    content = None if deleted else f'{{"resourceType":"{type}","id":"{id}"}}'.encode()
    return StoredVersion(type, id, number, 1_000 + number, deleted, content,
                         "DELETE" if deleted else "PUT", 0)


def write(repository: Repository, *versions: StoredVersion) -> None:
    with repository.transaction() as session:
        for stored in versions:
            session.put(stored, IndexRows())


def described(events: tuple[ChangeEvent, ...]) -> list[tuple[str, str, int, str]]:
    return [(e.resource_type, e.id, e.version, e.interaction) for e in events]


def test_events_come_in_commit_order_with_their_interaction(repository: Repository) -> None:
    write(repository, version("a", 1), version("b", 1, type="Observation"))
    write(repository, version("a", 2))
    write(repository, version("a", 3, deleted=True))
    batch = repository.changes(0)
    assert described(batch.events) == [
        ("Patient", "a", 1, "create"), ("Observation", "b", 1, "create"),
        ("Patient", "a", 2, "update"), ("Patient", "a", 3, "delete")]
    seqs = [event.seq for event in batch.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert batch.position == seqs[-1]
    assert batch.events[0].at == 1_001
    assert repository.changes(batch.position).events == ()


def test_limit_pages_through_the_feed(repository: Repository) -> None:
    write(repository, *(version(f"p{n}", 1) for n in range(5)))
    first = repository.changes(0, limit=2)
    assert [e.id for e in first.events] == ["p0", "p1"]
    assert first.position == first.events[-1].seq
    second = repository.changes(first.position, limit=2)
    third = repository.changes(second.position, limit=2)
    assert [e.id for e in second.events + third.events] == ["p2", "p3", "p4"]
    assert repository.changes(third.position, limit=2).events == ()


def test_a_type_filter_skips_other_types_and_moves_the_position_past_them(
        repository: Repository) -> None:
    write(repository, version("o1", 1, type="Observation"), version("a", 1),
          version("o2", 1, type="Observation"))
    batch = repository.changes(0, types={"Observation"})
    assert [e.id for e in batch.events] == ["o1", "o2"]
    write(repository, version("b", 1), version("c", 1))
    nothing = repository.changes(batch.position, types={"Observation"})
    assert nothing.events == ()
    assert nothing.position == repository.feed_horizon() > batch.position
    assert repository.changes(0, types=set()).events == ()


def test_a_cursor_is_claimed_advanced_and_released(repository: Repository) -> None:
    write(repository, version("a", 1), version("b", 1))
    assert feed_position(repository, "scores") is None
    assert claim_feed(repository, "scores", "me") == 0
    assert claim_feed(repository, "scores", "someone-else") is None  # my lease holds
    assert claim_feed(repository, "scores", "me") == 0  # renewing is claiming again
    batch = repository.changes(0)
    with repository.transaction() as session:
        advance_feed(session, "scores", "me", batch.position)
    assert feed_position(repository, "scores") == batch.position
    release_feed(repository, "scores", "me")
    assert claim_feed(repository, "scores", "someone-else") == batch.position
    [cursor] = feed_cursors(repository)
    assert (cursor.name, cursor.position, cursor.owner) == ("scores", batch.position,
                                                           "someone-else")


def test_advancing_rolls_back_with_the_consumers_writes(repository: Repository) -> None:
    write(repository, version("a", 1))
    claim_feed(repository, "scores", "me")
    with pytest.raises(RuntimeError), repository.transaction() as session:
        session.put(version("score", 1, type="Observation"), IndexRows())
        advance_feed(session, "scores", "me", 1)
        raise RuntimeError("the consumer failed after advancing")
    assert feed_position(repository, "scores") == 0
    assert [e.id for e in repository.changes(0).events] == ["a"]


def test_an_owner_whose_lease_ran_out_cannot_advance(repository: Repository) -> None:
    write(repository, version("a", 1))
    claim_feed(repository, "scores", "old", lease_seconds=0)
    assert claim_feed(repository, "scores", "new") == 0  # the old lease ran out
    with pytest.raises(FeedClaimLost), repository.transaction() as session:
        session.put(version("score", 1, type="Observation"), IndexRows())
        advance_feed(session, "scores", "old", 1)
    with repository.reader() as session:
        assert session.current("Observation", "score") is None


def test_a_new_cursor_may_start_at_the_end(repository: Repository) -> None:
    write(repository, version("a", 1))
    position = claim_feed(repository, "alerts", "me", from_start=False)
    assert position == repository.feed_horizon() > 0
    write(repository, version("b", 1))
    assert [e.id for e in repository.changes(position).events] == ["b"]


def test_a_cursor_outside_the_retained_history_is_lost(repository: Repository) -> None:
    write(repository, version("a", 1), version("b", 1))
    with pytest.raises(FeedLost, match="ahead of the newest"):
        repository.changes(1_000)
    with writing(repository) as session:
        session.execute("INSERT INTO feed_retention VALUES (?)", (1,))
    with pytest.raises(FeedLost, match="keeps versions after seq 1"):
        repository.changes(0)
    assert [e.id for e in repository.changes(1).events] == ["b"]


@pytest.mark.postgres
def test_postgres_never_reads_past_a_version_still_being_written(
        postgres_repository: Repository) -> None:
    """A writer holds seq 2 uncommitted while seq 3 commits: the reader stops at 1 until
    the writer ends, then sees 2 and 3; a rolled-back writer's seq is passed over."""
    repository = postgres_repository
    write(repository, version("first", 1))
    holding, release = threading.Event(), threading.Event()
    outcome: list[BaseException] = []

    def slow_writer(rollback: bool) -> None:
        try:
            with repository.transaction() as session:
                session.put(version(f"slow-{rollback}", 1), IndexRows())
                session.flush()  # its seq is taken and its row written, not committed
                holding.set()
                release.wait(30)
                if rollback:
                    raise LookupError("rolled back on purpose")
        except LookupError:
            pass
        except BaseException as error:  # reported by the test thread
            outcome.append(error)

    for rollback in (False, True):
        holding.clear()
        release.clear()
        start = repository.changes(0).position
        thread = threading.Thread(target=slow_writer, args=(rollback,))
        thread.start()
        assert holding.wait(30)
        write(repository, version(f"fast-{rollback}", 1))
        stalled = repository.changes(start)
        assert stalled.events == () and stalled.position == start
        release.set()
        thread.join(30)
        ids = [e.id for e in repository.changes(start).events]
        assert ids == ([f"fast-{rollback}"] if rollback else ["slow-False", "fast-False"])
    assert not outcome


@pytest.mark.postgres
def test_postgres_waits_for_a_writer_between_its_seq_and_its_mark(
        postgres_repository: Repository, postgres_url: str) -> None:
    """A transaction holding the gate but not yet its mark may hold any seq: the
    horizon does not move while it lasts."""
    repository = postgres_repository
    write(repository, version("a", 1))
    before = repository.feed_horizon()
    with psycopg.connect(postgres_url) as writer:
        writer.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", GATE)
        write(repository, version("b", 1))
        assert repository.changes(0).position == before
        writer.rollback()
    assert [e.id for e in repository.changes(before).events] == ["b"]


@pytest.mark.postgres
def test_postgres_a_follower_sees_every_version_of_concurrent_writers_once_in_order(
        postgres_repository: Repository) -> None:
    """Four writers commit transactions of varying size while a follower reads the
    feed as fast as it can: it ends with every version, each once, in seq order."""
    repository = postgres_repository
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            for round_ in range(40):
                write(repository, *(version(f"w{number}-{round_}-{n}", 1)
                                    for n in range(1 + (round_ * 7 + number) % 5)))
        except BaseException as error:  # reported by the test thread
            failures.append(error)

    followed: list[int] = []
    position = 0

    def follow() -> None:
        nonlocal position
        batch = repository.changes(position, limit=7)
        followed.extend(event.seq for event in batch.events)
        position = batch.position

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        follow()
    for thread in writers:
        thread.join()
    while position < repository.feed_horizon():
        follow()
    follow()
    assert not failures
    with repository.reader() as session:
        committed = [int(row[0]) for row in as_sql(session).execute(
            "SELECT seq FROM resource_version ORDER BY seq").fetchall()]
    assert followed == committed


def test_a_batch_of_events_reads_the_versions_they_name_in_one_go(
        repository: Repository) -> None:
    write(repository, version("a", 1), version("b", 1, type="Observation"))
    write(repository, version("a", 2), version("b", 2, deleted=True, type="Observation"))
    write(repository, version("a", 3))
    events = repository.changes(0).events
    wanted = [events[3], events[0], events[2]]  # any order: b deleted, a 1, a 2
    with repository.transaction() as session:
        read = session.versions_of(wanted)
        assert [(v.resource_type, v.id, v.version, v.deleted) for v in read] == [
            ("Observation", "b", 2, True), ("Patient", "a", 1, False),
            ("Patient", "a", 2, False)]  # as each event left it, not as it is now
        assert read[1].content == b'{"resourceType":"Patient","id":"a"}'
        assert session.versions_of([]) == []


def _rows(*seqs: int) -> list[tuple[int, str, str, int, bool, int]]:
    return [(seq, "Patient", f"p{seq}", 1, False, seq) for seq in seqs]


def test_rows_read_past_the_horizon_are_dropped_and_the_batch_ends_at_it() -> None:
    """PostgreSQL reads the rows in the same round trip as the horizon (ADR
    0028-feed-one-round-trip-reads), so some may lie above it: a writer holds a lower seq."""
    batch = batch_of(_rows(3, 4, 7, 8), 2, 4, 5, retained_after=0, newest=8)
    assert [event.seq for event in batch.events] == [3, 4]
    assert batch.position == 5  # not 8: seq 6 may still commit
    full = batch_of(_rows(3, 4), 2, 2, 5, retained_after=0, newest=8)
    assert full.position == 4  # the limit was reached below the horizon: more may follow
    assert batch_of([], 2, 4, 5, retained_after=0, newest=8).position == 5


def test_a_batch_refuses_a_cursor_outside_the_retained_history() -> None:
    with pytest.raises(FeedLost):
        batch_of([], 2, 4, 5, retained_after=3, newest=8)
    with pytest.raises(FeedLost):
        batch_of([], 9, 4, 5, retained_after=0, newest=8)


@pytest.mark.postgres
def test_postgres_a_horizon_found_after_the_rows_were_read_does_not_end_the_batch(
        postgres_repository: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread finds a newer horizon (``feed_horizon``) after a feed read took its
    rows' snapshot: the batch still ends at what that read saw, so the version committed
    in between comes in the next batch instead of being passed over."""
    import hygeia.store.postgres.repository as postgres_module

    repository = postgres_repository
    write(repository, version("before", 1))
    original = postgres_module.look_at_feed

    def look_then_commit_elsewhere(*args: object, **kwargs: object) -> object:
        look = original(*args, **kwargs)  # type: ignore[arg-type]
        write(repository, version("between", 1))  # commits after the rows were read
        repository.feed_horizon()  # another thread learns the newer horizon
        return look

    monkeypatch.setattr(postgres_module, "look_at_feed", look_then_commit_elsewhere)
    first = repository.changes(0)
    monkeypatch.setattr(postgres_module, "look_at_feed", original)
    assert [e.id for e in first.events] == ["before"]
    assert [e.id for e in repository.changes(first.position).events] == ["between"]


class HeldWriter:
    """Another thread in a write transaction holding ``row`` of ``table`` (SQLite: the
    writer's turn; PostgreSQL: the row's lock) until :meth:`release`, or 5 s at most."""

    def __init__(self, repository: Repository, table: str, key: str, value: str) -> None:
        self.holding, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(repository, table, key,
                                                                  value))
        self.thread.start()
        assert self.holding.wait(5)

    def _hold(self, repository: Repository, table: str, key: str, value: str) -> None:
        with writing(repository) as session:
            session.execute(f"UPDATE {table} SET updated = updated WHERE {key} = ?", (value,))
            self.holding.set()
            self.done.wait(5)

    def release(self) -> None:
        self.done.set()
        self.thread.join()


def test_a_claim_of_a_cursor_held_elsewhere_waits_for_no_writer(repository: Repository
                                                                 ) -> None:
    """Serving processes without the cursor try again every second: that look must not
    queue for the writer (SQLite's writer's turn, a locked row on PostgreSQL)."""
    assert claim_feed(repository, "scores", "me") == 0
    writer = HeldWriter(repository, "feed_cursor", "name", "scores")
    try:
        began = time.monotonic()
        assert claim_feed(repository, "scores", "someone-else") is None
        assert time.monotonic() - began < 2
    finally:
        writer.release()
    assert claim_feed(repository, "scores", "me") == 0  # its holder still renews
