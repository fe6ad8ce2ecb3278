"""Event consumers on a real service and database: order, wake-ups, retries, cursors."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from typing import Any

import orjson
import pytest

import hygeia.server.events.runner as runner_module
from hygeia.server import FhirService
from hygeia.server.events import EventContext, EventRunner, EventTiming
from hygeia.server.rest.write import create
from hygeia.store import (
    ChangeBatch,
    ChangeEvent,
    FeedCursor,
    Repository,
    as_sql,
    claim_feed,
    feed_cursors,
    feed_position,
)
from tests.helpers import call, patient
from tests.server.loading.test_loader import load, synthea_lines

QUICK = EventTiming(poll_seconds=30, backoff_seconds=0.05, max_backoff_seconds=0.2)


class Tally:
    """Transactional: records each Patient event as a Basic resource, in the same
    transaction as the cursor's advance."""

    name = "tally"
    types: Collection[str] | None = frozenset({"Patient"})
    from_start = True

    def __init__(self, fail_times: int = 0) -> None:
        self.fail_times = fail_times
        self.batches: list[tuple[ChangeEvent, ...]] = []

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        self.batches.append(batch.events)
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("the consumer failed")
        with context.transaction() as session:
            for event in batch.events:
                create(session, "Basic", {"resourceType": "Basic", "code": {"text": "seen"},
                                          "identifier": [{"system": "urn:seen",
                                                          "value": str(event.seq)}]})


class Notes:
    """At least once: keeps what it saw in memory and lets the runner advance."""

    name = "notes"
    types: Collection[str] | None = None
    from_start = False

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        self.seen.extend((e.resource_type, e.interaction) for e in batch.events)


@pytest.fixture
def running(service: FhirService) -> Iterator[FhirService]:
    yield service
    service.close()


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def caught_up(repository: Repository, name: str) -> Callable[[], bool]:
    return lambda: feed_position(repository, name) == repository.feed_horizon()


def seen_seqs(service: FhirService) -> list[int]:
    with service.reader() as session:
        rows = as_sql(session).execute(
            "SELECT content FROM resource_version WHERE res_type = 'Basic' ORDER BY seq"
        ).fetchall()
    return [int(orjson.loads(bytes(row[0]))["identifier"][0]["value"]) for row in rows]


def patient_seqs(service: FhirService) -> list[int]:
    with service.reader() as session:
        rows = as_sql(session).execute(
            "SELECT seq FROM resource_version WHERE res_type = 'Patient' ORDER BY seq"
        ).fetchall()
    return [int(row[0]) for row in rows]


def test_a_transactional_consumer_handles_each_write_once_in_commit_order(
        running: FhirService) -> None:
    tally = Tally()
    running.event_consumers.append(tally)
    for n in range(3):
        call(running, "POST", "Patient", patient(f"p{n}"))
    started = time.monotonic()
    running.start_events(QUICK)
    for n in range(3, 6):
        call(running, "PUT", f"Patient/fixed{n}", patient(f"p{n}", id=f"fixed{n}"))
    call(running, "DELETE", "Patient/fixed3")
    wait_for(caught_up(running.repository, "tally"))
    # woken by the commits, not by the 30-second poll
    assert time.monotonic() - started < 10
    assert seen_seqs(running) == patient_seqs(running)
    interactions = [e.interaction for batch in tally.batches for e in batch]
    assert interactions.count("delete") == 1 and interactions.count("create") == 6


def test_a_failing_consumer_gets_the_same_events_again_after_a_back_off(
        running: FhirService) -> None:
    tally = Tally(fail_times=2)
    running.event_consumers.append(tally)
    call(running, "POST", "Patient", patient("a"))
    running.start_events(QUICK)
    wait_for(caught_up(running.repository, "tally"))
    assert len(tally.batches) == 3 and tally.batches[0] == tally.batches[2]
    assert seen_seqs(running) == patient_seqs(running)


def test_a_consumer_that_writes_nothing_is_advanced_by_the_runner(
        running: FhirService) -> None:
    call(running, "POST", "Patient", patient("before"))  # from_start=False: not seen
    notes = Notes()
    running.event_consumers.append(notes)
    running.start_events(QUICK)
    wait_for(lambda: feed_position(running.repository, "notes") is not None)
    call(running, "POST", "Observation", {"resourceType": "Observation", "status": "final",
                                          "code": {"text": "pulse"}})
    wait_for(lambda: ("Observation", "create") in notes.seen)
    wait_for(caught_up(running.repository, "notes"))
    assert ("Patient", "create") not in notes.seen


def tally_runner(service: FhirService) -> EventRunner:
    """The runner of the test's consumer (the core's own, such as subscriptions', run too)."""
    return next(r for r in service.event_runners if r.consumer.name == "tally")


def tally_cursors(repository: Repository) -> list[FeedCursor]:
    return [cursor for cursor in feed_cursors(repository) if cursor.name == "tally"]


def test_stopping_releases_the_cursor_and_one_process_holds_it_at_a_time(
        service: FhirService, repository: Repository) -> None:
    first, second = FhirService(repository), FhirService(repository)
    for each in (first, second):
        each.event_consumers.append(Tally())
    call(first, "POST", "Patient", patient("a"))
    first.start_events(QUICK)
    wait_for(caught_up(repository, "tally"))
    second.start_events(QUICK)
    call(first, "POST", "Patient", patient("b"))
    wait_for(caught_up(repository, "tally"))
    [cursor] = tally_cursors(repository)
    assert cursor.owner == tally_runner(first).owner
    first.close()
    assert tally_cursors(repository)[0].owner is None
    call(second, "POST", "Patient", patient("c"))
    tally_runner(second).wake()
    wait_for(caught_up(repository, "tally"))
    assert tally_cursors(repository)[0].owner == tally_runner(second).owner
    assert seen_seqs(second) == patient_seqs(second)
    second.close()


def test_a_bulk_load_reaches_consumers_as_one_event_per_version(running: FhirService) -> None:
    """``hygeia load`` (here its Loader, with worker processes) writes versions like any
    other path, so a consumer sees each loaded resource: created, then updated by an
    upserting second load."""
    notes = Notes()
    notes.from_start = True
    running.event_consumers.append(notes)
    running.start_events(QUICK)
    lines = synthea_lines("001")
    load(running, lines, workers=2, upsert=True)
    load(running, lines, workers=2, upsert=True)
    wait_for(caught_up(running.repository, "notes"))
    loaded = Counter(orjson.loads(line)["resourceType"] for line in lines)
    seen = Counter(kind for kind, _ in notes.seen)
    assert all(seen[kind] == 2 * count for kind, count in loaded.items())
    assert Counter(i for _, i in notes.seen)["update"] == len(lines)


def test_a_consumer_whose_events_are_lost_stops_and_says_why(
        running: FhirService, caplog: pytest.LogCaptureFixture) -> None:
    call(running, "POST", "Patient", patient("a"))
    with running.transaction() as session:  # as if the database was restored from a backup
        as_sql(session).execute("INSERT INTO feed_cursor (name, position, updated) "
                                "VALUES ('tally', 1000, 0)")
    running.event_consumers.append(Tally())
    running.start_events(QUICK)
    thread = tally_runner(running)._thread
    assert thread is not None
    thread.join(10)
    assert not thread.is_alive()
    assert "event consumer tally stopped" in caplog.text and "ahead of the newest" in caplog.text
    assert feed_position(running.repository, "tally") == 1000


def test_a_process_without_the_cursor_does_not_claim_it_on_every_commit(
        service: FhirService, repository: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second process's runner failed to claim the cursor the first holds: commits of
    the types it wants, and of others (which mark a holder behind), leave it resting until
    its poll instead of costing a claim (a write transaction) each, or a claim loop."""
    claims: Counter[str] = Counter()

    def counted_claim(repository: Repository, name: str, owner: str, **options: Any
                      ) -> int | None:
        if name == "tally":
            claims[owner] += 1
        return claim_feed(repository, name, owner, **options)

    monkeypatch.setattr(runner_module, "claim_feed", counted_claim)
    first, second = FhirService(repository), FhirService(repository)
    for each in (first, second):
        each.event_consumers.append(Tally())
    try:
        first.start_events(QUICK)
        wait_for(lambda: bool(tally_cursors(repository)))
        second.start_events(QUICK)
        waiting = tally_runner(second)
        wait_for(lambda: claims[waiting.owner] >= 1)
        for n in range(20):
            call(second, "POST", "Patient", patient(f"p{n}"))  # wanted: it would wake
            call(second, "POST", "Observation", {"resourceType": "Observation",
                                                 "status": "final", "code": {"text": "x"}})
        tally_runner(first).wake()  # one repository: no commit signal between the two
        wait_for(caught_up(repository, "tally"))  # the first handled them all
        time.sleep(0.5)
        assert claims[waiting.owner] == 1
        assert not waiting.holding and tally_runner(first).holding
        assert seen_seqs(first) == patient_seqs(first)
    finally:
        first.close()
        second.close()


def test_a_consumer_with_its_own_poll_sees_another_process_commit_without_a_signal(
        service: FhirService, repository: Repository) -> None:
    """A commit made through another service (another process, to SQLite: no commit
    signal) reaches a consumer with ``poll_seconds`` at its poll, not the runner's 30 s."""
    watching, writing = FhirService(repository), FhirService(repository)
    tally = Tally()
    tally.poll_seconds = 0.2  # type: ignore[attr-defined]
    watching.event_consumers.append(tally)
    try:
        watching.start_events(QUICK)
        wait_for(lambda: bool(tally_cursors(repository)))
        time.sleep(0.5)  # the runner is resting now
        started = time.monotonic()
        call(writing, "POST", "Patient", patient("elsewhere"))
        wait_for(caught_up(repository, "tally"), seconds=20)
        assert time.monotonic() - started < 5
        assert seen_seqs(watching) == patient_seqs(watching)
    finally:
        watching.close()
        writing.close()


def test_a_consumer_that_gathers_reads_the_commits_of_that_moment_as_one_batch(
        running: FhirService) -> None:
    """Five commits in quick succession reach a consumer with ``gather_seconds`` in
    one or two batches, not one batch per commit."""
    notes = Notes()
    notes.gather_seconds = 1.0  # type: ignore[attr-defined]
    running.event_consumers.append(notes)
    running.start_events(QUICK)
    wait_for(lambda: bool(runner_named(running, "notes").holding))
    batches = counted_batches(notes)
    for n in range(5):
        call(running, "POST", "Patient", patient(f"g{n}"))
    wait_for(lambda: len(notes.seen) >= 5)
    assert len(notes.seen) == 5
    assert len(batches) <= 2, batches


def runner_named(service: FhirService, name: str) -> EventRunner:
    return next(r for r in service.event_runners if r.consumer.name == name)


def counted_batches(notes: Notes) -> list[int]:
    """Record the size of each batch ``notes`` handles."""
    sizes: list[int] = []
    handle = notes.handle

    def counting(batch: ChangeBatch, context: EventContext) -> None:
        sizes.append(len(batch.events))
        handle(batch, context)

    notes.handle = counting  # type: ignore[method-assign]
    return sizes


class AheadTally(Tally):
    """A Tally that reads the feed after each batch itself while it commits (as the NEWS2
    engine does), at most two events at a time, and offers that batch to the runner."""

    def __init__(self, repository: Repository) -> None:
        super().__init__()
        self.repository = repository
        self.ahead: ChangeBatch | None = None
        self.asked: list[int] = []

    def pending(self, position: int) -> ChangeBatch | None:
        self.asked.append(position)
        ahead, self.ahead = self.ahead, None
        return ahead if ahead is not None and ahead.events and \
            ahead.events[0].seq > position else None

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        super().handle(batch, context)
        self.ahead = self.repository.changes(batch.position, 2, self.types)


def test_a_batch_the_consumer_read_ahead_is_handed_over_next(running: FhirService) -> None:
    """A consumer's ``pending`` batch is handled next instead of a read of the feed (a
    batch the consumer read itself while the one before committed), each event once, in
    order, the cursor moving past each batch."""
    for n in range(5):
        call(running, "POST", "Patient", patient(f"p{n}"))
    tally = AheadTally(running.repository)
    runner = EventRunner(running, tally, EventTiming(batch=2))
    while runner.step():
        pass
    # the first batch read by the runner; the others read ahead, two events each
    assert [len(events) for events in tally.batches] == [2, 2, 1]
    assert seen_seqs(running) == patient_seqs(running)
    assert feed_position(running.repository, "tally") == running.repository.feed_horizon()


class FlushRecorder:
    """The service as an event host, noting each write transaction's ``flush_to_disk``."""

    def __init__(self, service: FhirService) -> None:
        self.service = service
        self.repository = service.repository
        self.flushes: list[bool] = []

    def transaction(self, *, flush_to_disk: bool = True) -> Any:
        self.flushes.append(flush_to_disk)
        return self.service.transaction(flush_to_disk=flush_to_disk)

    def reader(self) -> Any:
        return self.service.reader()


def test_the_runner_moves_an_at_least_once_consumer_without_waiting_for_the_disk(
        running: FhirService) -> None:
    """A lost move hands the events over again, which such a consumer must bear anyway."""
    host = FlushRecorder(running)
    notes = Notes()
    runner = EventRunner(host, notes, QUICK)
    assert runner.step() is False  # claims the cursor at the newest version
    call(running, "POST", "Patient", patient("moved"))
    host.flushes.clear()
    runner.step()
    assert notes.seen == [("Patient", "create")]
    assert host.flushes == [False]
    assert feed_position(running.repository, "notes") == running.repository.feed_horizon()


def test_a_busy_feed_of_types_a_consumer_does_not_want_costs_it_a_look_per_skip(
        running: FhirService) -> None:
    """Commits of other types, one after another, mark the runner behind while it looks
    at the feed: it looks again ``skip_seconds`` after its last look, not at once (a
    tight loop of reads and cursor moves, each holding a pool connection), and still
    moves its cursor past them."""
    tally = Tally()
    running.event_consumers.append(tally)
    running.start_events(EventTiming(poll_seconds=30, skip_seconds=0.5))
    runner = tally_runner(running)
    wait_for(lambda: runner.holding)
    looks: list[float] = []
    step = runner.step

    def counted_step() -> bool:
        looks.append(time.monotonic())
        return step()

    runner.step = counted_step  # type: ignore[method-assign]
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        call(running, "POST", "Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    wait_for(caught_up(running.repository, "tally"), seconds=5)
    assert 1 <= len(looks) <= 2.0 / 0.5 + 3, len(looks)
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(looks)), looks
    assert tally.batches == []


def test_a_consumer_that_says_commits_are_not_urgent_reads_them_per_skip_in_order(
        running: FhirService) -> None:
    """``urgent`` False: the runner is not woken by each commit of a type it wants but
    reads them ``skip_seconds`` after its last look, in bigger batches, every one of
    them, in order."""
    notes = Notes()
    notes.urgent = lambda types: False  # type: ignore[attr-defined]
    running.event_consumers.append(notes)
    timing = EventTiming(poll_seconds=30, skip_seconds=0.5)
    running.start_events(timing)
    wait_for(lambda: runner_named(running, "notes").holding)
    batches = counted_batches(notes)
    started = time.monotonic()
    written = 0
    while time.monotonic() - started < 2.0:
        call(running, "POST", "Patient", patient(f"u{written}"))
        written += 1
    wait_for(lambda: len(notes.seen) >= written, seconds=5)
    assert notes.seen == [("Patient", "create")] * written
    # a full batch is read again at once (more is waiting: a fast machine writes
    # thousands in 2 s); the others are the reads the skips paced
    paced = [size for size in batches if size < timing.batch]
    assert 1 <= len(paced) <= 2.0 / 0.5 + 3, (batches, written)
    assert len(batches) < written / 2, (batches, written)
