"""Registers the subscription machinery on a service (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hygeia.server.events import EventConsumer
from hygeia.server.extensions import Host, Listener, WriteHook
from hygeia.server.rest.operations import OperationRegistry
from hygeia.server.subscriptions.acceptance import SubscriptionAcceptance
from hygeia.server.subscriptions.delivery import Delivery
from hygeia.server.subscriptions.feed import CONSUMER, SIGNAL, SubscriptionFeed
from hygeia.server.subscriptions.operations import SUBSCRIPTION_OPERATIONS
from hygeia.server.subscriptions.websocket import WebsocketChannel
from hygeia.store import claim_feed, feed_position, release_feed, worker_name

__all__ = ["Subscriptions"]


class SubscriptionHost(Host, Protocol):
    """What subscriptions register on (``FhirService`` is one)."""

    listeners: list[Listener]
    signal_actions: dict[str, Callable[[], None]]

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
        self.feed = SubscriptionFeed(service.registry, self.delivery.handed)
        service.signal_actions[SIGNAL] = self.delivery.wake  # recorded by another process
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
        """Create the consumer's cursor at the newest change if there is none yet, and
        take over the Subscriptions stored before it (a database written by an older
        Hygeia, or loaded before the first start): notified from now on."""
        host = self.delivery.host
        if feed_position(host.repository, CONSUMER) is not None:
            return
        owner = worker_name()
        position = claim_feed(host.repository, CONSUMER, owner, from_start=False)
        if position is None:  # another process is creating it
            return
        try:
            with host.transaction() as session:
                self.feed.adopt(session, position)
        finally:
            release_feed(host.repository, CONSUMER, owner)

    def stop(self) -> None:
        if self._started:
            self.delivery.stop()
