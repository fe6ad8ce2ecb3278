"""The change-feed consumer that turns committed changes into numbered notifications.

It reads every event (its cursor "subscriptions" is durable, ADR 0008) and, in
one transaction with the cursor's advance, records each match as the next event
number of that subscription (``subscription_notification``): a crash after the
commit of a write but before its notification is recorded simply hands the
same events over again, and the numbers come out the same.  That transaction does not
wait for the disk: a crash can lose only the newest of them, record and cursor
move together, and the events are matched again to the same numbers.  Sending
them is delivery's job (delivery.py, websocket.py), after this commit; each
batch is handed to this process's delivery thread (:class:`Handoff`) so it need
not read back what was just written (docs/adr/0022-subscriptions-unflushed-record-and-handoff.md).

A Subscription's own versions go through here too, in order: its first version
starts its state at that position (it is told of later events only), and a
status the client sets (``off``, or ``requested`` again after an ``error``) is
taken over; ``active`` set by a client counts as ``requested``, since only a
handshake makes a subscription active.  A deleted Subscription is turned off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

import orjson

import hygeia.server.subscriptions.tables as tables
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.search.matcher import MatchContext, matches
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.query import parse_query
from hygeia.server.auth.access import Access
from hygeia.server.events import EventContext
from hygeia.server.subscriptions.owner import access_of, may_read
from hygeia.server.subscriptions.spec import SubscriptionSpec, read_subscription
from hygeia.store import ChangeBatch, ChangeEvent, Session, feed_contents

log = logging.getLogger("hygeia.subscriptions")
CONSUMER = "subscriptions"
SIGNAL = ":subscriptions"  # the commit signal that wakes every process's delivery
ADOPT_LIMIT = 10_000  # Subscriptions taken over when the cursor is first created


@dataclass(frozen=True)
class Handoff:
    """What one batch recorded, handed to this process's delivery after the commit, so
    it can send at once without reading it back (delivery.py): the subscriptions'
    specs and states as the batch left them, the notifications recorded for each, and
    the Subscriptions whose own versions the batch held (their state changed)."""

    specs: dict[str, SubscriptionSpec | None]
    states: dict[str, tables.State]
    notified: dict[str, list[tables.Notified]]
    changed: frozenset[str]


class SubscriptionFeed:
    """An :class:`~hygeia.server.events.EventConsumer` of every resource type."""

    name = CONSUMER
    types: Collection[str] | None = None  # every type: any may be subscribed to
    from_start = False
    # woken by a commit, wait this long so the commits of that moment come as one batch:
    # its cost is mostly per batch (three transactions), and per commit it was a quarter
    # of a busy server's CPU (benchmarks.insurance --profile); a notification waits that
    # much longer
    gather_seconds = 0.05

    def __init__(self, registry: SearchRegistry, recorded: Callable[[Handoff], None]) -> None:
        self.registry = registry
        self.recorded = recorded
        self._specs: dict[tuple[str, int], SubscriptionSpec | None] = {}
        self._owners: dict[str, Access] = {}  # the creators' access, of this batch
        self._contents: dict[int, bytes] = {}  # the batch's versions, by seq (_prefetch)
        self._live = True  # a live subscription at the last batch (unknown yet: say so)
        self._heard = 0  # Subscriptions committed, counted by ``urgent``

    def urgent(self, types: Collection[str] | None) -> bool:
        """Woken at once by a Subscription, or anything while one is live; without one,
        the runner reads the other types within its ``skip_seconds``, in bigger batches
        (each batch is three transactions: per commit, a pool connection a third of the
        time in benchmarks.clinical's stream, for nothing)."""
        if types is None or "Subscription" in types:
            self._heard += 1
            return True
        return self._live

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        """Record the batch's notifications with the cursor's move, then hand them to this
        process's delivery (:class:`Handoff`).

        The commit does not wait for the disk (``flush_to_disk=False``): the events
        themselves are already durable, and the record, the subscriptions' counts and the
        cursor's move commit together, so a crash that loses the record loses the move
        too and the same events are matched again, in the same order, to the same
        numbers (sent again: at least once). The wait for the flush was the largest single part
        of a notification's latency on PostgreSQL."""
        changed: set[str] = set()
        heard = self._heard
        with context.transaction(flush_to_disk=False) as session:
            states, owners = tables.live_states_and_owners(session)
            live = {state.id: state for state in states}
            specs = {id: self._spec(session, id) for id in live}
            self._owners = {id: access_of(text) for id, text in owners.items()}
            self._contents = self._prefetch(session, batch, specs)
            pending = tables.Recording()
            for event in batch.events:
                if event.resource_type == "Subscription":
                    pending.write(session)  # its state is read again: write what we hold
                    self._subscription_changed(session, event, live, specs)
                    changed.add(event.id)
                    continue
                self._notify(session, event, live, specs, pending)
            pending.write(session)
            if pending.written:  # the process holding a subscription's delivery lease
                session.signal([SIGNAL])  # may be another
        self._contents = {}
        # a Subscription committed while this batch was read is still to come: live
        self._live = bool(live) or bool(changed) or self._heard != heard
        if pending.written or changed:
            self.recorded(Handoff(specs, live, pending.written, frozenset(changed)))

    @staticmethod
    def _prefetch(session: Session, batch: ChangeBatch,
                  specs: dict[str, SubscriptionSpec | None]) -> dict[int, bytes]:
        """The content of every event some live subscription may be told of, in one
        query (a Subscription created in this batch reads its events' one by one)."""
        wanted = {spec.resource_type for spec in specs.values() if spec is not None}
        return feed_contents(session, [e for e in batch.events if e.resource_type in wanted])

    def adopt(self, session: Session, position: int) -> int:
        """Start the state of every stored Subscription that has none, as if each had
        been written at ``position`` (where a new cursor starts); returns how many."""
        query = parse_query("Subscription", [], max_count=ADOPT_LIMIT,
                            registry=session.registry)
        query.count = ADOPT_LIMIT
        ids = [id for id in session.find_ids(query) if tables.state_of(session, id) is None]
        if len(ids) >= ADOPT_LIMIT:
            log.warning("more than %d Subscriptions stored before this server: only the "
                        "first are notified until they are updated", ADOPT_LIMIT)
        for id in ids:
            found = session.current("Subscription", id)
            if found is not None:
                event = ChangeEvent(position, "Subscription", id, found.version, "update",
                                    found.last_updated)
                self._subscription_changed(session, event, {}, {})
        return len(ids)

    def _spec(self, session: Session, id: str) -> SubscriptionSpec | None:
        """The current version of Subscription ``id``, read (cached by version)."""
        found = session.current("Subscription", id)
        if found is None or found.deleted or found.content is None:
            return None
        key = (id, found.version)
        if key not in self._specs:
            if len(self._specs) > 10_000:
                self._specs.clear()
            try:
                self._specs[key] = read_subscription(orjson.loads(found.content), self.registry)
            except FhirError as error:  # stored before it was checked: never notified
                log.warning("Subscription/%s cannot be honoured: %s", id, error)
                self._specs[key] = None
        return self._specs[key]

    def _subscription_changed(self, session: Session, event: ChangeEvent,
                              live: dict[str, tables.State],
                              specs: dict[str, SubscriptionSpec | None]) -> None:
        state = tables.state_of(session, event.id)
        spec = None if event.interaction == "delete" else self._spec(session, event.id)
        status = "off" if spec is None else spec.status
        if status == "active" and (state is None or state.status != "active"):
            status = "requested"  # only a handshake (delivery) makes it active
        if state is None:
            if spec is None:
                return
            tables.start(session, event.id, status, event.seq)
        elif status != state.status:
            tables.set_status(session, event.id, status)
        if spec is not None:
            tables.set_channel(session, event.id, spec.channel,
                               (spec.heartbeat_seconds or 0) * 1_000_000)
        fresh = tables.state_of(session, event.id)
        if fresh is not None and fresh.status in tables.LIVE:
            live[event.id], specs[event.id] = fresh, spec
            owner = tables.owners(session, [event.id]).get(event.id)
            if owner is not None:
                self._owners[event.id] = access_of(owner)
        else:
            live.pop(event.id, None)

    def _notify(self, session: Session, event: ChangeEvent, live: dict[str, tables.State],
                specs: dict[str, SubscriptionSpec | None], pending: tables.Recording) -> int:
        resource: dict[str, Any] | None = None
        recorded = 0
        for id, state in list(live.items()):
            spec = specs.get(id)
            if spec is None or spec.resource_type != event.resource_type or \
                    not spec.wants(event.interaction, event.at) or event.seq <= state.start_seq:
                continue
            if resource is None:
                resource = self._content(session, event)
                if resource is None:
                    return recorded
            if not _matches(spec, resource, self.registry):
                continue
            owner = self._owners.get(id)
            if owner is not None and not may_read(session, owner, event.resource_type,
                                                  event.id):
                continue  # the creator could not read it: not even its id is told
            number = state.events + 1
            pending.add(state, number, event)
            live[id] = _with_events(state, number)
            recorded += 1
        return recorded

    def _content(self, session: Session, event: ChangeEvent) -> dict[str, Any] | None:
        """The resource an event is about (read ahead for the batch, see
        :meth:`_prefetch`): a deletion is matched as the version it deleted."""
        content = self._contents.get(event.seq)
        if content is None:
            version = event.version - 1 if event.interaction == "delete" else event.version
            found = session.version(event.resource_type, event.id, version)
            if found is None or found.content is None:
                return None
            content = found.content
        loaded: dict[str, Any] = orjson.loads(content)
        return loaded


def _with_events(state: tables.State, events: int) -> tables.State:
    return replace(state, events=events)


def _matches(spec: SubscriptionSpec, resource: dict[str, Any],
             registry: SearchRegistry) -> bool:
    """The in-memory matcher's verdict; a resource it cannot evaluate is no match (and is
    logged), so one odd resource never stalls every subscription's feed."""
    try:
        return matches(spec.query, resource, MatchContext(registry=registry))
    except Exception:
        log.exception("Subscription/%s: %s/%s could not be matched", spec.id,
                      resource.get("resourceType"), resource.get("id"))
        return False
