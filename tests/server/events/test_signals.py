"""Commit signals on PostgreSQL: a commit in another process (here: another repository
on the same database, as a second serving worker has) wakes this process's consumers
and its rest-hook delivery at once, long before their poll (30 s here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hygeia.server import FhirService, OutboundSettings, Settings, SubscriptionSettings
from hygeia.server.events import EventTiming
from hygeia.store import Repository, feed_position, open_repository
from tests.helpers import body, call, patient
from tests.server.events.test_runner import Tally, seen_seqs
from tests.server.subscriptions.receiver import Receiver, status_of
from tests.server.subscriptions.test_subscriptions import observation, topic_subscription

SLOW_POLL = EventTiming(poll_seconds=30, skip_seconds=30)
WOKEN_WITHIN = 5.0  # seconds; the polls are 30


@pytest.fixture
def other(postgres_url: str, repository: Repository) -> Iterator[FhirService]:
    """A second "process" on the same PostgreSQL database: a repository of its own."""
    if repository.dialect != "postgresql":
        pytest.skip("commit signals are PostgreSQL's LISTEN/NOTIFY")
    second = open_repository(postgres_url)
    yield FhirService(second)
    second.close()


def test_a_commit_in_another_process_wakes_a_consumer_before_its_poll(
        service: FhirService, other: FhirService) -> None:
    tally = Tally()
    service.event_consumers.append(tally)
    service.start_events(SLOW_POLL)
    try:
        time.sleep(0.5)  # the runner is resting now, for 30 s unless woken
        call(other, "POST", "Patient", patient("elsewhere"))
        deadline = time.monotonic() + WOKEN_WITHIN
        while not seen_seqs(service) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(seen_seqs(service)) == 1, "not woken by the other process's commit"
    finally:
        service.close()


def test_a_commit_of_types_no_consumer_wants_wakes_none(
        service: FhirService, other: FhirService) -> None:
    """The signal carries the types: a Basic written elsewhere leaves a Patient consumer
    resting (its cursor stays put until its poll)."""
    service.event_consumers.append(Tally())
    service.start_events(SLOW_POLL)
    try:
        time.sleep(0.5)
        before = feed_position(service.repository, "tally")
        call(other, "POST", "Basic", {"resourceType": "Basic", "code": {"text": "x"}})
        time.sleep(1.0)
        assert feed_position(service.repository, "tally") == before
    finally:
        service.close()


def test_listening_begins_with_a_signal_for_anything(service: FhirService,
                                                     other: FhirService) -> None:
    """A commit made before LISTEN held signalled no one: the first signal, once it
    holds, wakes everything; the next is the other repository's commit."""
    stopping = threading.Event()
    signals = service.repository.listen(stopping)
    try:
        assert next(signals) == frozenset()
        call(other, "POST", "Patient", patient("after-listen"))
        assert "Patient" in next(signals)
    finally:
        stopping.set()
        signals.close()  # type: ignore[attr-defined]


def test_a_signal_for_anything_runs_every_signal_action(service: FhirService) -> None:
    ran: list[str] = []
    service.signal_actions[":first"] = lambda: ran.append("first")
    service.signal_actions[":second"] = lambda: ran.append("second")
    service.heard(frozenset({":second"}))
    service.heard(frozenset({"Patient"}))
    assert ran == ["second"]
    service.heard(frozenset())
    assert sorted(ran) == ["first", "second", "second"]


def test_a_rest_hook_notification_leaves_without_waiting_for_the_polls(
        postgres_url: str, repository: Repository) -> None:
    """The subscription's consumer and delivery run in one process with 30-second polls;
    the Observation is written by another; the notification arrives within seconds."""
    if repository.dialect != "postgresql":
        pytest.skip("commit signals are PostgreSQL's LISTEN/NOTIFY")
    receiver = Receiver()
    settings = Settings(outbound=OutboundSettings(allow=("127.0.0.1",)),
                        subscriptions=SubscriptionSettings(poll_seconds=30))
    serving = FhirService(repository, settings)
    writer_repository = open_repository(postgres_url)
    writer = FhirService(writer_repository, settings)
    try:
        serving.subscriptions.start()
        serving.start_events(SLOW_POLL)
        created = call(writer, "POST", "Subscription", topic_subscription(receiver.url))
        assert created.status == 201, created
        receiver.wait_for("handshake", timeout=WOKEN_WITHIN)
        time.sleep(0.5)  # both threads rest again
        started = time.monotonic()
        observation_id = body(call(writer, "POST", "Observation", observation("8867-4")))["id"]
        [sent] = receiver.wait_for("event-notification", timeout=WOKEN_WITHIN)
        assert time.monotonic() - started < WOKEN_WITHIN
        assert status_of(sent)["events"][0]["event-number"] == "1"
        assert sent["entry"][1]["fullUrl"].endswith(f"Observation/{observation_id}")
    finally:
        serving.close()
        writer.close()
        writer_repository.close()
        receiver.close()
    assert not [t for t in threading.enumerate() if t.name == "hygeia-commit-signals"]
