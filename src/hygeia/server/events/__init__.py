"""Event consumers: code that reacts to every committed change, surviving crashes.

Subscriptions, alert rules, CDS engines and analytics refresh read the durable
change feed (:mod:`hygeia.store.feed`) through an :class:`EventConsumer`;
the service runs each on an :class:`EventRunner` thread started with its jobs.
A pillar registers a consumer with :func:`register_consumer` when it is
imported, or appends one to ``FhirService.event_consumers`` before
``start_jobs``.
"""

from __future__ import annotations

from collections.abc import Callable

from hygeia.server.events.consumer import EventConsumer, EventContext, EventHost
from hygeia.server.events.runner import EventRunner, EventTiming
from hygeia.server.events.signals import CommitSignals

_FACTORIES: list[Callable[[], EventConsumer]] = []


def register_consumer(factory: Callable[[], EventConsumer]) -> None:
    """Every service made from now on runs a consumer made by ``factory`` (one per
    service: each serving process claims the cursor in turn)."""
    _FACTORIES.append(factory)


def registered_consumers() -> list[EventConsumer]:
    """A fresh consumer from each registered factory."""
    return [factory() for factory in _FACTORIES]


__all__ = ["CommitSignals", "EventConsumer", "EventContext", "EventHost", "EventRunner",
           "EventTiming", "register_consumer", "registered_consumers"]
