"""FHIR Subscriptions: R4 criteria-based and R5 Backport topic-based, rest-hook and websocket.

How the parts fit (docs/guide/subscriptions.md):

* ``acceptance.py``: a write hook refuses (422) what cannot be honoured;
* ``feed.py``: an event consumer of the change feed records, for each committed
  change, a numbered notification per matching subscription (tables.py, the
  "subscriptions" migration stream), exactly once with its cursor;
* ``delivery.py``: a thread per process sends rest-hook handshakes,
  notifications in order, heartbeats, with retries and then status ``error``;
* ``websocket.py``: the websocket channel, a listener on ``--ws-port``;
* ``operations.py``: ``$status``, ``$events`` and ``$get-ws-binding-token``;
* ``capability.py``: the topics in the CapabilityStatement.

:class:`Subscriptions` registers them on the service and runs the delivery
thread; the service holds one.
"""

from __future__ import annotations

from typing import Protocol

from hygeia.server.events import EventConsumer
from hygeia.server.extensions import Host, Listener, WriteHook
from hygeia.server.rest.operations import OperationRegistry
from hygeia.server.subscriptions.acceptance import SubscriptionAcceptance
from hygeia.server.subscriptions.capability import with_topics
from hygeia.server.subscriptions.delivery import Delivery
from hygeia.server.subscriptions.feed import CONSUMER, SubscriptionFeed
from hygeia.server.subscriptions.operations import SUBSCRIPTION_OPERATIONS
from hygeia.server.subscriptions.websocket import WebsocketChannel
from hygeia.store import claim_feed, feed_position, release_feed, worker_name

__all__ = ["Subscriptions", "with_topics"]


class SubscriptionHost(Host, Protocol):
    """What subscriptions register on (``FhirService`` is one)."""

    listeners: list[Listener]

    @property
    def operations(self) -> OperationRegistry: ...

    @property
    def write_hooks(self) -> _Hooks: ...

    def add_event_consumer(self, consumer: EventConsumer) -> None: ...


class _Hooks(Protocol):
    def register(self, hook: WriteHook) -> WriteHook: ...


class Subscriptions:
    """The subscription machinery of one service (its hook, consumer, operations,
    listener and delivery thread)."""

    def __init__(self, service: SubscriptionHost) -> None:
        self.delivery = Delivery(service)
        self.feed = SubscriptionFeed(service.registry, self.delivery.wake)
        service.write_hooks.register(SubscriptionAcceptance())
        service.add_event_consumer(self.feed)
        for operation in SUBSCRIPTION_OPERATIONS:
            service.operations.register(operation)
        if service.settings.subscriptions.ws_port is not None:
            service.listeners.append(WebsocketChannel(service))
        self._started = False

    def start(self) -> None:
        """Start delivery, and make sure the feed cursor exists from now on: a
        Subscription created as soon as the server answers is not missed while the
        consumer's thread is still starting (a new cursor begins at the newest change)."""
        if self._started:
            return
        self._started = True
        self.ensure_cursor()
        self.delivery.start()

    def ensure_cursor(self) -> None:
        repository = self.delivery.host.repository
        if feed_position(repository, CONSUMER) is None:
            owner = worker_name()
            if claim_feed(repository, CONSUMER, owner, from_start=False) is not None:
                release_feed(repository, CONSUMER, owner)

    def stop(self) -> None:
        if self._started:
            self.delivery.stop()
