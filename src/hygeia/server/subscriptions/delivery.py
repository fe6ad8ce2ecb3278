"""Rest-hook delivery: handshakes, event notifications in order, heartbeats, retries.

A :class:`Delivery` thread runs in every serving process.  It takes the
subscriptions whose next attempt is due, holds each one's lease (so a
subscription's notifications leave from one process at a time, in event-number
order) and:

* ``requested``: a websocket subscription becomes ``active`` at once; a
  rest-hook one gets a handshake notification, and becomes ``active`` when the
  endpoint accepts it (any 2xx);
* ``active``: sends the events recorded after the last delivered one, up to the
  channel's max-count per notification, and records them delivered only after
  the endpoint's 2xx (at least once: a crash in between sends them again);
  with nothing to send and a heartbeat period due, a heartbeat.

A failure waits ``retry_seconds`` doubling up to ``max_retry_seconds``; after
``max_failures`` in a row the subscription's status turns to ``error`` (its
events stay recorded: a client sets it back to ``requested`` to resume, and
recovers any gap with ``$events``).  Endpoints are reached through the outbound
policy (server/outbound.py): a private address needs ``--outbound-allow``.  Each
endpoint's connection is kept open for the next notification
(``outbound.KeptConnections``), each request checked against the policy again.

The feed of this process hands over each batch it records (:meth:`Delivery.handed`);
while this thread holds a subscription's lease and knows the last number it
delivered, it sends the handed events at once instead of reading them back
(:meth:`Delivery.run_handed`); everything else goes through the database
(:meth:`Delivery.run_once`), on the same thread, so the order holds.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

import hygeia.server.subscriptions.tables as tables
from hygeia.fhir.datetime import now_us
from hygeia.fhir.outcome import FhirError
from hygeia.server.background import BackgroundLoop
from hygeia.server.outbound import KeptConnections, OutboundPolicy, OutboundRefused
from hygeia.server.rest.write import update
from hygeia.server.subscriptions.feed import Handoff
from hygeia.server.subscriptions.notify import ContentOf, notification_bundle
from hygeia.server.subscriptions.spec import SubscriptionSpec, read_subscription
from hygeia.store import owner_gone, worker_name

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

log = logging.getLogger("hygeia.subscriptions")
LEASE_SECONDS = 30.0
HANDED_BATCHES = 1_000  # handed over and not yet looked at; older ones are read back
SECOND = 1_000_000


def fhir_base(host: Host) -> str:
    """The FHIR base URL notifications refer to (relative when the server has none)."""
    root = host.settings.base_url
    return f"{root.rstrip('/')}/fhir" if root else ""


def current_spec(host: Host, id: str) -> SubscriptionSpec | None:
    """Subscription ``id`` as it is now, or None (deleted, or not honourable)."""
    with host.reader() as session:
        found = session.current("Subscription", id)
    if found is None or found.content is None:
        return None
    try:
        return read_subscription(orjson.loads(found.content), host.registry)
    except FhirError:
        return None


def content_reader(host: Host) -> ContentOf:
    """Reads versions for full-resource notifications."""
    def content_of(resource_type: str, id: str, version: int) -> bytes | None:
        with host.reader() as session:
            found = session.version(resource_type, id, version)
        return None if found is None else found.content
    return content_of


def change_status(host: Host, id: str, status: str, error: str | None = None) -> None:
    """Set the server-kept status and the Subscription's own ``status`` (and ``error``)
    together, as a new version of the resource."""
    with host.transaction() as session:
        tables.set_status(session, id, status, error)
        found = session.current("Subscription", id, for_update=True)
        if found is None or found.content is None:
            return
        resource: dict[str, Any] = orjson.loads(found.content)
        if resource.get("status") == status:
            return
        resource["status"] = status
        if error:
            resource["error"] = error[:1000]
        else:
            resource.pop("error", None)
        update(session, "Subscription", id, resource, base_url=fhir_base(host))


class Delivery(BackgroundLoop):
    """The rest-hook delivery thread of one process."""

    thread_name = "hygeia-subscriptions"

    def __init__(self, host: Host) -> None:
        self.host = host
        self.settings = host.settings.subscriptions
        outbound = host.settings.outbound
        self.policy = OutboundPolicy(outbound.allow, outbound.timeout_seconds,
                                     outbound.max_bytes)
        self.owner = worker_name()
        self.connections = KeptConnections()  # one kept-alive connection per endpoint
        # batches the feed recorded in this process, not yet looked at (see handed)
        self._handed: deque[Handoff] = deque(maxlen=HANDED_BATCHES)
        # subscriptions whose lease this thread holds and whose delivered number it
        # knows, as their rows were after its last own write (see _serve_handed)
        self._hot: dict[str, tables.State] = {}
        self._look = threading.Event()  # the database must be asked what is due (run_once)
        self._look.set()
        super().__init__()

    def wake(self) -> None:
        """Something may be due that was not handed over (another process recorded it, a
        status changed): ask the database at once."""
        self._look.set()
        super().wake()

    def handed(self, handoff: Handoff) -> None:
        """The feed of this process committed ``handoff``: send it without reading it back
        where this thread knows the subscription's state (its lease, the last number it
        delivered), else look in the database."""
        if len(self._handed) == HANDED_BATCHES:  # the oldest falls out: the database has it
            self._look.set()
        self._handed.append(handoff)
        self.woken.set()

    def stop(self, timeout: float = 10.0) -> None:
        was_running = self.running
        super().stop(timeout)
        self.connections.close()
        self._hot.clear()
        self._look.set()
        if was_running:
            try:
                tables.release(self.host.repository, self.owner)
            except Exception:  # the leases run out on their own
                log.warning("could not release subscription leases", exc_info=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                left = self.run_handed()
                served = self.run_once() if self._asked(left) else 0
            except Exception:
                log.exception("subscription delivery failed")
                self._look.set()
                served = 0
            if served:  # more may be waiting (a backlog beyond max-count): go on at once
                self._look.set()
                continue
            if not self.woken.wait(self.settings.poll_seconds):
                self._look.set()  # the poll: retries and heartbeats fall due here
            self.woken.clear()

    def _asked(self, left: bool) -> bool:
        """Whether to ask the database what is due now. The flag is cleared before the
        database is read, so a wake-up after this read is not lost: it sets it again."""
        if self._look.is_set():
            self._look.clear()
            return True
        return left

    def run_handed(self) -> bool:
        """Send what the feed handed over since the last look; True when some of it could
        not be sent from memory (the database is then asked, :meth:`run_once`).

        Every batch waiting is taken at once, and a subscription's events from all of
        them go out together (up to its max-count per notification): under load the
        feed commits small batches, and one POST and one delivery record for several
        of them is less work and less waiting than one each."""
        specs: dict[str, SubscriptionSpec | None] = {}
        states: dict[str, tables.State] = {}
        notified: dict[str, list[tables.Notified]] = {}
        cold: set[str] = set()  # changed meanwhile: served from the database
        while self._handed:
            handoff = self._handed.popleft()
            cold.update(handoff.changed)
            for id, notes in handoff.notified.items():
                notified.setdefault(id, []).extend(notes)
                specs[id] = handoff.specs.get(id)
                state = handoff.states.get(id)  # none: turned off later in that batch
                if state is None:
                    cold.add(id)
                else:
                    states[id] = state
        for id in cold:
            self._hot.pop(id, None)
        left = bool(cold)
        for id, notes in notified.items():
            if self.stopping.is_set() or id in cold or \
                    not self._serve_handed(specs[id], states.get(id), notes):
                left = True
        return left

    def _serve_handed(self, spec: SubscriptionSpec | None, state: tables.State | None,
                      notified: list[tables.Notified]) -> bool:
        """Send ``notified`` (numbered after what this thread last delivered) at once, if
        this thread holds the lease with more than half its time left and knows the
        subscription's delivered number; False when it must be done from the database.

        Only ``active`` rest-hook subscriptions whose last attempt succeeded are kept
        in ``_hot``: a failure, a status change, a lease to renew all go through
        :meth:`run_once`, as before. The order holds: a batch is sent only when its
        first number follows the last one delivered, and both paths run on this thread."""
        hot = self._hot.get(state.id) if state is not None else None
        if spec is None or state is None or hot is None or state.status != "active" or \
                spec.channel != "rest-hook" or not self._held(hot):
            return False
        pending = [note for note in notified if note.number > hot.delivered]
        if pending and pending[0].number != hot.delivered + 1:
            return False  # a gap: earlier ones are still to be sent from the database
        for start in range(0, len(pending), spec.max_count):
            chunk = pending[start:start + spec.max_count]
            sending = replace(hot, events=max(state.events, chunk[-1].number))
            if not self._send(spec, sending, "event-notification", chunk):
                return True  # failed: the retry and its schedule are in the database
            self._delivered(spec.id, chunk[-1].number)
            hot = self._hot[spec.id] = replace(sending, delivered=chunk[-1].number)
        return True

    def run_once(self) -> int:
        """One pass over the subscriptions that are due; returns how many were served.

        Only a subscription with something to do is read and claimed (tables.due), so
        idle ones cost nothing; the state is read again once claimed, as another
        process may have served it meanwhile.
        """
        served = 0
        for due in tables.due(self.host.repository, now_us()):
            if self.stopping.is_set():
                break
            if self._leased_elsewhere(due):
                continue
            spec = current_spec(self.host, due.id)
            if spec is None:
                continue
            if self._held(due):  # held while ``due`` was read: no one else changed it
                state: tables.State | None = due
            elif self._claim(due):
                state = tables.read_state(self.host.repository, due.id)
            else:
                continue
            if state is not None and state.status in tables.LIVE:
                self.serve(spec, state)
                served += 1
        return served

    def _leased_elsewhere(self, state: tables.State) -> bool:
        """Whether another live process holds ``state``'s lease: a claim would fail, so
        it is not tried (every process's delivery is woken by each recorded batch, and
        trying cost the others a read and a write transaction per batch)."""
        return state.owner is not None and state.owner != self.owner and \
            (state.lease_until or 0) >= now_us() and not owner_gone(state.owner)

    def _held(self, state: tables.State) -> bool:
        """Whether this process holds ``state``'s lease with more than half its time left
        (so a busy subscription costs no claim, nor a second read, per notification)."""
        return state.owner == self.owner and (state.lease_until or 0) - now_us() > \
            LEASE_SECONDS * SECOND / 2

    def _claim(self, state: tables.State) -> bool:
        """Claim (or renew) ``state``'s lease; False when another process holds it."""
        return tables.claim(self.host.repository, state, self.owner, now_us(),
                            int(LEASE_SECONDS * SECOND))

    def serve(self, spec: SubscriptionSpec, state: tables.State) -> None:
        if spec.channel == "websocket":  # websocket.py sends; nothing to shake hands with
            if state.status == "requested":
                change_status(self.host, spec.id, "active")
            return
        if state.status == "requested":
            if self._send(spec, state, "handshake", []):
                self._delivered(spec.id, state.delivered)  # the heartbeat counts from here
                change_status(self.host, spec.id, "active")
            return
        pending = tables.notifications(self.host.repository, spec.id, state.delivered,
                                       None, spec.max_count)
        if pending:
            if self._send(spec, state, "event-notification", pending):
                self._delivered(spec.id, pending[-1].number)
                self._remember(spec, replace(state, delivered=pending[-1].number))
            return
        self._remember(spec, state)
        period = spec.heartbeat_seconds
        if period and now_us() - state.last_sent >= period * SECOND and \
                self._send(spec, state, "heartbeat", []):
            self._delivered(spec.id, state.delivered)

    def _remember(self, spec: SubscriptionSpec, state: tables.State) -> None:
        """Keep ``state`` (just delivered, no failure pending, lease ours) so the feed's
        next batch for it is sent from memory (:meth:`_serve_handed`)."""
        if spec.channel == "rest-hook" and state.status == "active" and \
                state.failures == 0 and state.owner == self.owner:
            self._hot[spec.id] = state
        else:
            self._hot.pop(spec.id, None)

    def _send(self, spec: SubscriptionSpec, state: tables.State, kind: str,
              pending: list[tables.Notified]) -> bool:
        """POST one notification; on failure, schedule the retry or turn to error."""
        events = max(state.events, pending[-1].number if pending else 0)
        bundle = notification_bundle(spec, fhir_base(self.host), "active" if kind != "handshake"
                                     else "requested", kind, events, pending,
                                     content_reader(self.host))
        headers = {"Content-Type": spec.mime, "User-Agent": "hygeia", **dict(spec.headers)}
        policy = self.policy
        if spec.timeout_seconds:
            policy = OutboundPolicy(policy.allow, min(policy.timeout_seconds,
                                                      float(spec.timeout_seconds)),
                                    policy.max_bytes)
        try:
            self.connections.post(spec.endpoint or "", orjson.dumps(bundle), headers, policy)
        except OutboundRefused as error:
            self._failed(spec, state, str(error))
            return False
        return True

    def _delivered(self, id: str, number: int) -> None:
        """Record the delivery without waiting for the disk: delivery is at least once, so
        a power cut that loses the record only sends those events again, and the next
        notification need not wait for an fsync."""
        with self.host.transaction(flush_to_disk=False) as session:
            tables.delivered(session, id, number, now_us())

    def _failed(self, spec: SubscriptionSpec, state: tables.State, error: str) -> None:
        self._hot.pop(spec.id, None)
        failures = state.failures + 1
        log.warning("Subscription/%s: delivery failed (%d in a row): %s", spec.id, failures,
                    error)
        if failures >= self.settings.max_failures:
            with self.host.transaction() as session:
                tables.failed(session, spec.id, failures, 0, error)
            change_status(self.host, spec.id, "error", error)
            return
        delay = min(self.settings.max_retry_seconds,
                    self.settings.retry_seconds * 2 ** (failures - 1))
        with self.host.transaction() as session:
            tables.failed(session, spec.id, failures, now_us() + int(delay * SECOND), error)

