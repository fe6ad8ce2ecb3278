"""Subscriptions on a real service and database: acceptance, matching, numbering, delivery
to a real HTTP endpoint, retries then error, $status and $events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from hygeia.fhir.outcome import FhirError
from hygeia.server import FhirService, OutboundSettings, Settings, SubscriptionSettings
from hygeia.server.auth.access import Access
from hygeia.server.auth.scopes import Scopes
from hygeia.server.events import EventRunner
from hygeia.server.subscriptions import tables
from hygeia.server.subscriptions.spec import (
    BACKPORT_PROFILE,
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    TOPIC_CANONICAL,
)
from hygeia.store import Repository
from tests.helpers import body, call, unique
from tests.server.subscriptions.receiver import Receiver, status_of

QUICK = SubscriptionSettings(max_failures=3, retry_seconds=0.0, poll_seconds=0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def subs(repository: Repository) -> Iterator[FhirService]:
    """A service that may deliver to loopback, with quick retries (nothing started:
    each test drives the feed and delivery one step at a time)."""
    service = FhirService(repository, Settings(
        outbound=OutboundSettings(allow=("127.0.0.1",)), subscriptions=QUICK))
    feed(service)  # the consumer's cursor starts at the newest change, as at a first start
    yield service
    service.close()


def observation(code: str, value: float = 1.0) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "/min"}}


def topic_subscription(endpoint: str, *filters: str, content: str = "id-only",
                       channel: str = "rest-hook", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Subscription", "status": "requested", "reason": "test",
        "meta": {"profile": [BACKPORT_PROFILE]},
        "criteria": "urn:hygeia:topic:Observation",
        "channel": {"type": channel, "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]},
                    **({"endpoint": endpoint} if channel == "rest-hook" else {})}}
    if filters:
        resource["_criteria"] = {"extension": [{"url": FILTER_CRITERIA, "valueString": f}
                                               for f in filters]}
    resource.update(extra)
    return resource


def feed(service: FhirService) -> None:
    """Let the subscriptions consumer read everything committed so far."""
    runner = EventRunner(service, service.subscriptions.feed)
    while runner.step():
        pass
    runner.stop()


def deliver(service: FhirService, rounds: int = 1) -> None:
    for _ in range(rounds):
        service.subscriptions.delivery.run_once()
        feed(service)


def create(service: FhirService, resource: dict[str, Any]) -> str:
    response = call(service, "POST", resource["resourceType"], resource)
    assert response.status == 201, response
    return str(body(response)["id"])


@pytest.mark.parametrize(("change", "expression", "words"), [
    ({"channel": {"type": "email", "endpoint": "mailto:a@example.org"}},
     "Subscription.channel.type", "Channel type 'email'"),
    ({"criteria": "Observation?nonsense=1"}, "Subscription.criteria", "nonsense"),
    ({"criteria": "Unknown?code=1"}, "Subscription.criteria", "resource type"),
    ({"criteria": "urn:hygeia:topic:Nothing"}, "Subscription.criteria", "not known"),
    ({"criteria": "http://example.org/topic"}, "Subscription.criteria", "not known"),
    ({"criteria": "Observation?subject.name=x"}, "Subscription.criteria", "Chained"),
    ({"criteria": "Observation?interaction=merge"}, "Subscription.criteria", "merge"),
    ({"channel": {"type": "rest-hook", "endpoint": "ftp://example.org/x"}},
     "Subscription.channel.endpoint", "http or https"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://example.org/x",
                  "payload": "application/xml"}},
     "Subscription.channel.payload", "application/xml"),
])
def test_what_cannot_be_honoured_is_refused(subs: FhirService, change: dict[str, Any],
                                             expression: str, words: str) -> None:
    resource = {"resourceType": "Subscription", "status": "requested", "reason": "test",
                "criteria": "Observation?code=1",
                "channel": {"type": "rest-hook", "endpoint": "https://example.org/x"},
                **change}
    with pytest.raises(FhirError) as refused:
        call(subs, "POST", "Subscription", resource)
    issue = refused.value.issues[0]
    assert refused.value.status == 422
    assert issue.expression == expression and words in issue.diagnostics
    assert body(call(subs, "GET", "Subscription")).get("entry") is None


def test_backport_filters_of_another_type_and_bad_content_are_refused(
        subs: FhirService) -> None:
    for resource, expression in [
        (topic_subscription("https://example.org/x", "Patient?name=x"),
         "Subscription.criteria.extension"),
        (topic_subscription("https://example.org/x", content="everything"),
         "Subscription.channel.payload.extension")]:
        with pytest.raises(FhirError) as refused:
            call(subs, "POST", "Subscription", resource)
        assert refused.value.issues[0].expression == expression


def test_topics_are_in_the_capability_statement(subs: FhirService) -> None:
    statement = subs.capabilities()
    entry = next(e for e in statement["rest"][0]["resource"] if e["type"] == "Subscription")
    topics = {e["valueCanonical"] for e in entry["extension"] if e["url"] == TOPIC_CANONICAL}
    assert {"urn:hygeia:topic:Observation", "urn:hygeia:topic:Patient"} <= topics
    assert any(url.endswith("/backport-subscription-server-r4")
               for url in statement["instantiates"])
    assert {"create", "update"} <= {i["code"] for i in entry["interaction"]}
    names = {o["name"] for o in entry["operation"]}
    assert {"status", "events", "get-ws-binding-token"} <= names


def test_handshake_then_filtered_notifications_in_order(subs: FhirService,
                                                        receiver: Receiver) -> None:
    code = unique()[:12]
    id = create(subs, topic_subscription(receiver.url, f"Observation?code={code}",
                                         "Observation?interaction=create,delete"))
    feed(subs)
    assert tables.read_state(subs.repository, id).status == "requested"
    deliver(subs)
    handshake = receiver.wait_for("handshake")[0]
    assert handshake["type"] == "history"
    assert status_of(handshake)["topic"] == "urn:hygeia:topic:Observation"
    assert body(call(subs, "GET", f"Subscription/{id}"))["status"] == "active"

    first = create(subs, observation(code))
    create(subs, observation("other"))  # filtered out by code
    updated = {**observation(code, 2.0), "id": first}
    call(subs, "PUT", f"Observation/{first}", updated)  # filtered out by interaction
    call(subs, "DELETE", f"Observation/{first}")
    feed(subs)
    deliver(subs, rounds=2)
    sent = receiver.wait_for("event-notification", 1)
    numbers = [int(e["event-number"]) for n in sent for e in status_of(n)["events"]]
    assert numbers == [1, 2]
    entries = [e for n in sent for e in n["entry"][1:]]
    assert [e["request"]["method"] for e in entries] == ["POST", "DELETE"]
    assert all("resource" not in e for e in entries)  # id-only
    assert entries[0]["fullUrl"].endswith(f"Observation/{first}")

    assert receiver.connections == 1  # kept alive from the handshake on

    status = body(call(subs, "GET", f"Subscription/{id}/$status"))
    parameters = status_of({"entry": status["entry"]})
    assert parameters["events-since-subscription-start"] == "2"
    assert parameters["status"] == "active" and parameters["type"] == "query-status"


def test_full_resource_payload_and_events_replay(subs: FhirService, receiver: Receiver
                                                 ) -> None:
    code = unique()[:12]
    id = create(subs, topic_subscription(receiver.url, f"Observation?code={code}",
                                         content="full-resource"))
    feed(subs)
    deliver(subs)
    ids = [create(subs, observation(code, float(n))) for n in range(3)]
    feed(subs)
    deliver(subs, rounds=4)
    sent = receiver.wait_for("event-notification", 3)
    resources = [e["resource"] for n in sent for e in n["entry"][1:]]
    assert [r["id"] for r in resources] == ids
    assert resources[2]["valueQuantity"]["value"] == 2.0

    replay = body(call(subs, "GET", f"Subscription/{id}/$events",
                       query=[("eventsSinceNumber", "2"), ("eventsUntilNumber", "3")]))
    replayed = status_of(replay)
    assert replayed["type"] == "query-event"
    assert [e["event-number"] for e in replayed["events"]] == ["2", "3"]
    assert [e["resource"]["id"] for e in replay["entry"][1:]] == ids[1:]
    empty = body(call(subs, "GET", f"Subscription/{id}/$events",
                      query=[("eventsSinceNumber", "1"), ("content", "empty")]))
    assert len(empty["entry"]) == 1 and "focus" not in str(empty["entry"][0])


def test_r4_criteria_subscription_with_empty_payload(subs: FhirService, receiver: Receiver
                                                     ) -> None:
    family = unique()[:12]
    create(subs, {"resourceType": "Subscription", "status": "requested", "reason": "r4",
                  "criteria": f"Patient?family={family}",
                  "channel": {"type": "rest-hook", "endpoint": receiver.url,
                              "header": ["Authorization: Bearer secret"]}})
    feed(subs)
    deliver(subs)
    create(subs, {"resourceType": "Patient", "name": [{"family": family}]})
    create(subs, {"resourceType": "Patient", "name": [{"family": "Else"}]})
    feed(subs)
    deliver(subs)
    sent = receiver.wait_for("event-notification")
    assert len(sent[0]["entry"]) == 1  # empty: the status alone
    assert status_of(sent[0])["events-since-subscription-start"] == "1"
    assert receiver.headers[-1]["authorization"] == "Bearer secret"


def test_failures_back_off_then_turn_to_error(subs: FhirService, receiver: Receiver
                                              ) -> None:
    receiver.status = 500
    id = create(subs, topic_subscription(receiver.url))
    feed(subs)
    for _ in range(QUICK.max_failures):
        deliver(subs)
    assert receiver.attempts == QUICK.max_failures
    state = tables.read_state(subs.repository, id)
    assert state is not None and state.status == "error" and "500" in (state.error or "")
    stored = body(call(subs, "GET", f"Subscription/{id}"))
    assert stored["status"] == "error" and "500" in stored["error"]
    deliver(subs)
    assert receiver.attempts == QUICK.max_failures  # no more attempts in error

    receiver.status = 200  # the client asks again: handshake, then active
    call(subs, "PUT", f"Subscription/{id}", {**stored, "status": "requested"})
    feed(subs)
    deliver(subs)
    receiver.wait_for("handshake")
    assert body(call(subs, "GET", f"Subscription/{id}"))["status"] == "active"


def test_heartbeat_when_nothing_happens(subs: FhirService, receiver: Receiver) -> None:
    resource = topic_subscription(receiver.url)
    resource["channel"]["extension"] = [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 1}]
    create(subs, resource)
    feed(subs)
    deliver(subs)
    receiver.wait_for("handshake")
    time.sleep(1.1)
    deliver(subs)
    receiver.wait_for("heartbeat")


def test_only_events_after_the_subscription_and_deleted_subscription_stops(
        subs: FhirService, receiver: Receiver) -> None:
    code = unique()[:12]
    create(subs, observation(code))  # before the subscription: never notified
    id = create(subs, topic_subscription(receiver.url, f"Observation?code={code}"))
    feed(subs)
    deliver(subs)
    call(subs, "DELETE", f"Subscription/{id}")
    create(subs, observation(code))
    feed(subs)
    deliver(subs)
    assert receiver.of_kind("event-notification") == []
    state = tables.read_state(subs.repository, id)
    assert state is not None and state.status == "off" and state.events == 0


def test_notifications_carry_only_what_the_creator_may_read(subs: FhirService,
                                                            receiver: Receiver) -> None:
    """A token that reads only laboratory Observations learns of nothing else, not even
    an id or a count; one without Observation access learns of nothing."""
    code = unique()[:12]
    lab = Access("app", Scopes.parse("system/Subscription.cruds system/Observation.rs"
                                     "?category=laboratory"), "app")
    blind = Access("other", Scopes.parse("system/Subscription.cruds"), "other")
    narrow = create_as(subs, lab, topic_subscription(receiver.url, f"Observation?code={code}",
                                                     content="full-resource"))
    none = create_as(subs, blind, topic_subscription(receiver.url, f"Observation?code={code}"))
    feed(subs)
    deliver(subs)

    def categorised(category: str) -> dict[str, Any]:
        return {**observation(code), "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": category}]}]}

    vital = create(subs, categorised("vital-signs"))
    laboratory = create(subs, categorised("laboratory"))
    feed(subs)
    deliver(subs, rounds=2)
    sent = [n for n in receiver.of_kind("event-notification")]
    assert [e["resource"]["id"] for n in sent for e in n["entry"][1:]] == [laboratory]
    assert vital not in str(sent)
    assert tables.read_state(subs.repository, narrow).events == 1
    assert tables.read_state(subs.repository, none).events == 0
    assert all(status_of(n)["subscription"]["reference"].endswith(narrow) for n in sent)


def create_as(service: FhirService, access: Access, resource: dict[str, Any]) -> str:
    response = call(service, "POST", resource["resourceType"], resource, access=access)
    assert response.status == 201, response
    return str(body(response)["id"])


def test_type_level_status_and_binding_tokens_only_for_websockets(
        subs: FhirService, receiver: Receiver) -> None:
    hook = create(subs, topic_subscription(receiver.url))
    socket = create(subs, topic_subscription("", channel="websocket"))
    feed(subs)
    deliver(subs)
    answer = body(call(subs, "GET", "Subscription/$status", query=[("id", f"{hook},{socket}")]))
    statuses = {status_of({"entry": [e]})["subscription"]["reference"].rsplit("/", 1)[1]:
                status_of({"entry": [e]})["status"] for e in answer["entry"]}
    assert statuses == {hook: "active", socket: "active"}
    with pytest.raises(FhirError) as refused:
        call(subs, "GET", f"Subscription/{hook}/$get-ws-binding-token")
    assert refused.value.status == 422 and "rest-hook" in refused.value.issues[0].diagnostics
    with pytest.raises(FhirError) as no_port:  # this service has no --ws-port
        call(subs, "GET", f"Subscription/{socket}/$get-ws-binding-token")
    assert "--ws-port" in no_port.value.issues[0].diagnostics
    with pytest.raises(FhirError) as bad:
        call(subs, "GET", f"Subscription/{hook}/$events", query=[("eventsSinceNumber", "x")])
    assert bad.value.status == 400 and bad.value.issues[0].expression == "eventsSinceNumber"


def test_no_events_after_the_subscriptions_end(subs: FhirService, receiver: Receiver) -> None:
    code = unique()[:12]
    id = create(subs, topic_subscription(receiver.url, f"Observation?code={code}",
                                         end="2020-01-01T00:00:00Z"))
    feed(subs)
    create(subs, observation(code))
    feed(subs)
    assert tables.read_state(subs.repository, id).events == 0


@pytest.mark.parametrize("resource", [
    {},
    {"channel": 3},
    {"channel": {"type": "rest-hook", "endpoint": 5}, "criteria": "Observation"},
    {"channel": {"type": "websocket", "extension": "x", "_payload": [1]},
     "criteria": "urn:hygeia:topic:Observation", "_criteria": {"extension": {"a": 1}}},
    {"channel": {"type": "websocket", "header": [1, None]}, "criteria": "Patient"},
    {"channel": {"type": "websocket", "extension": [{"url": HEARTBEAT_PERIOD,
                                                     "valueUnsignedInt": "1"}]},
     "criteria": "Patient"},
    {"channel": {"type": "websocket"}, "criteria": "Patient?" + "&".join(["name=x"] * 500)},
    {"channel": {"type": "websocket"}, "criteria": "Patient?birthdate=notadate"},
    {"channel": {"type": "websocket"}, "criteria": "Patient", "end": "yesterday"},
])
def test_hostile_subscriptions_never_crash(resource: dict[str, Any]) -> None:
    """Shapes a load without validation could store: a refusal with a place (or, for
    malformed extensions, their being ignored), never a crash (the feed consumer reads
    stored Subscriptions with the same function)."""
    from hygeia.fhir.search.parameters import default_registry
    from hygeia.server.subscriptions.spec import read_subscription

    try:
        spec = read_subscription({"resourceType": "Subscription", **resource},
                                 default_registry())
    except FhirError as refused:
        assert refused.status in (400, 422)
        assert refused.issues[0].expression
    else:
        assert spec.channel == "websocket" and spec.query.clauses == []


def test_a_client_cannot_skip_the_handshake(subs: FhirService, receiver: Receiver) -> None:
    id = create(subs, {**topic_subscription(receiver.url), "status": "active"})
    feed(subs)
    assert tables.read_state(subs.repository, id).status == "requested"
    deliver(subs)
    receiver.wait_for("handshake")
    assert tables.read_state(subs.repository, id).status == "active"


def test_subscriptions_stored_before_the_first_start_are_taken_over(
        repository: Repository, receiver: Receiver) -> None:
    """A database that held Subscriptions before its server first ran the consumer (an
    older Hygeia, hygeia load): they are notified from the first start on."""
    service = FhirService(repository, Settings(
        outbound=OutboundSettings(allow=("127.0.0.1",)), subscriptions=QUICK))
    try:
        code = unique()[:12]
        id = create(service, topic_subscription(receiver.url, f"Observation?code={code}"))
        service.subscriptions.ensure_cursor()
        create(service, observation(code))
        feed(service)
        deliver(service, rounds=2)
        assert [e["event-number"] for n in receiver.wait_for("event-notification")
                for e in status_of(n)["events"]] == ["1"]
        assert tables.read_state(service.repository, id).status == "active"
    finally:
        service.close()


def test_a_process_leaves_a_subscription_another_delivers_alone(
        subs: FhirService, receiver: Receiver, repository: Repository,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process's delivery is woken by each recorded batch; one that does not hold a
    subscription's lease skips it without trying to claim it (a read and a write
    transaction per batch, in each process but one)."""
    id = create(subs, topic_subscription(receiver.url))
    feed(subs)
    deliver(subs)  # the handshake: ``subs`` holds the lease now
    receiver.wait_for("handshake")
    other = FhirService(repository, Settings(
        outbound=OutboundSettings(allow=("127.0.0.1",)), subscriptions=QUICK))
    claims: list[str] = []
    claim = tables.claim

    def counted_claim(repository: Repository, state: tables.State, owner: str, now: int,
                      lease_us: int) -> bool:
        claims.append(owner)
        return claim(repository, state, owner, now, lease_us)

    monkeypatch.setattr(tables, "claim", counted_claim)
    try:
        create(subs, observation("8867-4"))
        feed(subs)
        assert [state.id for state in tables.due(repository, 2**62)] == [id]
        assert other.subscriptions.delivery.run_once() == 0
        assert claims == []
        deliver(subs)  # the holder sends it, without claiming (it holds the lease)
        assert len(receiver.wait_for("event-notification")) == 1
        assert claims == []
    finally:
        other.close()


def numbers_sent(receiver: Receiver, count: int) -> list[int]:
    return [int(e["event-number"]) for n in receiver.wait_for("event-notification", count)
            for e in status_of(n)["events"]]


def counting(monkeypatch: pytest.MonkeyPatch, *names: str) -> list[str]:
    """Record each call of the named functions of ``tables`` (they still run)."""
    calls: list[str] = []
    for name in names:
        real = getattr(tables, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(*args)
        monkeypatch.setattr(tables, name, counted)
    return calls


def test_a_recorded_batch_is_sent_from_memory_in_order(
        subs: FhirService, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the delivery thread has delivered a subscription's events itself, the feed's
    next batches for it are sent as handed over, without asking the database what is
    due or reading the notifications back; the numbers stay in order."""
    code = unique()[:12]
    id = create(subs, topic_subscription(receiver.url, f"Observation?code={code}"))
    feed(subs)
    deliver(subs, rounds=2)  # the handshake, then the status becomes active
    create(subs, observation(code))
    feed(subs)
    delivery = subs.subscriptions.delivery
    assert delivery.run_handed() is True  # the state is not known yet: from the database
    deliver(subs)  # event 1 from the database: the thread now knows the state
    assert numbers_sent(receiver, 1) == [1]
    calls = counting(monkeypatch, "due", "notifications", "read_state", "claim")
    for _batch in range(3):
        for _ in range(2):
            create(subs, observation(code))
        feed(subs)
        assert delivery.run_handed() is False  # nothing left for the database
    assert numbers_sent(receiver, 4) == [1, 2, 3, 4, 5, 6, 7]
    assert calls == []
    assert tables.read_state(subs.repository, id).delivered == 7


def test_a_batch_after_a_gap_is_sent_from_the_database(
        subs: FhirService, receiver: Receiver) -> None:
    """A handed batch that does not follow the last number delivered (an earlier one was
    not handed over: the queue overflowed) is left to the database, which sends every
    event once, in order."""
    code = unique()[:12]
    create(subs, topic_subscription(receiver.url, f"Observation?code={code}"))
    feed(subs)
    deliver(subs, rounds=2)
    create(subs, observation(code))
    feed(subs)
    delivery = subs.subscriptions.delivery
    delivery.run_handed()
    deliver(subs)
    create(subs, observation(code))
    feed(subs)
    delivery._handed.clear()  # event 2's batch is lost on its way
    create(subs, observation(code))
    feed(subs)
    assert delivery.run_handed() is True  # event 3 does not follow event 1
    assert numbers_sent(receiver, 1) == [1]
    while delivery.run_once():  # one event per notification (max-count 1)
        pass
    assert numbers_sent(receiver, 3) == [1, 2, 3]


def test_a_record_lost_with_its_cursor_move_is_recorded_again_alike(
        subs: FhirService, receiver: Receiver) -> None:
    """The feed commits without waiting for the disk. A crash can lose only the newest
    such commits, a record of notifications always with its cursor move (and any
    delivery record after it); the same events are then matched again to the same
    numbers. Simulated here by restoring the rows those commits changed."""
    code = unique()[:12]
    id = create(subs, topic_subscription(receiver.url, f"Observation?code={code}",
                                         "Observation?interaction=create"))
    feed(subs)
    deliver(subs, rounds=2)
    before = tables.read_state(subs.repository, id)
    from hygeia.server.subscriptions.feed import CONSUMER
    from hygeia.store import feed_position
    position = feed_position(subs.repository, CONSUMER)
    created = [create(subs, observation(code)) for _ in range(3)]
    call(subs, "PUT", f"Observation/{created[0]}", {**observation(code, 2.0),
                                                     "id": created[0]})  # not a create
    feed(subs)
    first = tables.notifications(subs.repository, id, 0, None, 10)
    assert [(n.number, n.id) for n in first] == [(1, created[0]), (2, created[1]),
                                                 (3, created[2])]
    with subs.transaction() as session:  # the lost tail of commits
        session.execute("DELETE FROM subscription_notification WHERE subscription = ?",
                        (id,))
        session.execute("UPDATE subscription_state SET events = ? WHERE id = ?",
                        (before.events, id))
        session.execute("UPDATE feed_cursor SET position = ? WHERE name = ?",
                        (position, CONSUMER))
    feed(subs)
    again = tables.notifications(subs.repository, id, 0, None, 10)
    assert again == first


def test_the_feed_is_urgent_only_while_a_subscription_lives(subs: FhirService,
                                                             receiver: Receiver) -> None:
    """Without a live subscription, commits of other types do not wake the feed (it
    reads them within the runner's skip_seconds); a Subscription always does, and any
    commit does while one lives."""
    consumer = subs.subscriptions.feed
    create(subs, observation("x"))
    feed(subs)
    assert not consumer.urgent({"Observation"})
    assert consumer.urgent({"Subscription"}) and consumer.urgent(None)
    id = create(subs, topic_subscription(receiver.url))
    feed(subs)
    assert consumer.urgent({"Observation"})
    call(subs, "DELETE", f"Subscription/{id}")
    feed(subs)  # a batch with a Subscription in it leaves it urgent until the next one
    create(subs, observation("y"))
    feed(subs)
    assert not consumer.urgent({"Observation"})
