"""What an event consumer is, and the context it handles a batch of changes in.

A consumer reads the durable change feed (:mod:`hygeia.store.feed`) with a
cursor of its own, named after it, that survives restarts.  Two ways to be
correct after a crash:

- *transactional*: write the results in ``context.transaction()``; the cursor
  advances in that same transaction, so results and cursor commit together and
  every event is handled exactly once;
- *at least once*: act elsewhere (send a notification, write a file), and let
  the runner advance the cursor after ``handle`` returns; a crash in between
  hands the same events over again, so the action must be idempotent.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from hygeia.store import ChangeBatch, ChangeEvent, Repository, Session, advance_feed


class EventConsumer(Protocol):
    """A reader of the change feed, registered on the service (``event_consumers``).

    ``name`` keys its cursor (keep it stable: a new name starts over); ``types``
    are the resource types it wants (None: all); ``from_start``: a new cursor
    starts at the first version ever stored, else at the newest (only what is
    written from then on).  ``handle`` gets the events in commit order; raising
    makes the runner hand the same batch over again later, after a back-off.
    An optional ``batch`` attribute caps the events per call (default 500), for a
    consumer whose events are slow to handle; an optional ``poll_seconds`` shortens
    the idle poll (default 1 s) for a consumer whose lag matters, since a commit made
    by another process on SQLite (``hygeia load``, a second server) sends no signal
    and waits for the poll; an optional ``gather_seconds`` makes a woken runner wait
    that long before it reads, so the commits of that moment come as one batch (for a
    consumer whose cost is mostly per batch, at the price of that much lag).

    An optional ``pending(position)`` returns the batch after ``position`` that the
    consumer read from the feed itself (a prefix of what the feed holds after
    ``position``: a ``Repository.changes`` answer), or None; the runner hands it over
    next instead of reading the feed, at once, without gathering. A consumer that
    reads and prepares the next batch while the last one's transaction commits uses it
    to overlap the two (the NEWS2 engine); the cursor still moves with each batch.

    An optional ``urgent(types)`` says whether a commit of ``types`` (None: unknown) it
    wants wakes it at once; False: it reads them within the runner's ``skip_seconds``,
    as versions of types it does not want, in bigger batches (order, cursor and at
    least once unchanged). For a consumer with nothing to do with them for now (no live
    subscription, no view): woken by every commit, each idle consumer held a pool
    connection a third of the time for a look and a transaction per commit. It is
    called on the committing thread: keep it to reading a flag.
    """

    name: str
    types: Collection[str] | None
    from_start: bool

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        """Handle every event of ``batch`` (see the module docstring for crash safety)."""


class EventHost(Protocol):
    """What the events package needs of the server: its repository and sessions that
    know the server's search parameters (``FhirService`` is one)."""

    repository: Repository

    def transaction(self, *, flush_to_disk: bool = True
                    ) -> AbstractContextManager[Session]: ...

    def reader(self) -> AbstractContextManager[Session]: ...


class EventContext:
    """The capabilities a consumer handles one batch with."""

    def __init__(self, host: EventHost, consumer: str, owner: str, batch: ChangeBatch,
                 lease_seconds: float) -> None:
        self._host = host
        self._consumer = consumer
        self._owner = owner
        self._batch = batch
        self._lease_seconds = lease_seconds
        self.position = -1  # where this context advanced the cursor (-1: not yet)

    def reader(self) -> AbstractContextManager[Session]:
        """A read-only snapshot, e.g. to read an event's version (``Session.version``)."""
        return self._host.reader()

    @contextmanager
    def transaction(self, through: ChangeEvent | None = None, *,
                    flush_to_disk: bool = True) -> Iterator[Session]:
        """A write transaction that also moves the consumer's cursor past ``through``
        (default: the whole batch); both commit, or neither.

        ``flush_to_disk=False`` lets the commit return before it is on disk (see
        ``Repository.transaction``): a power cut may lose the last batches' results,
        but their cursor moves are lost with them, so those events are handed over
        again; for a consumer whose results can be recomputed from the events.

        Call it once per batch, or once per event with ``through`` each time (the
        events in order) to keep the work of each event in a transaction of its own.
        Raises ``FeedClaimLost`` (and rolls back) if another process took the
        cursor over meanwhile.
        """
        position = self._batch.position if through is None else through.seq
        with self._host.transaction(flush_to_disk=flush_to_disk) as session:
            yield session
            advance_feed(session, self._consumer, self._owner, position,
                         lease_seconds=self._lease_seconds)
        self.position = position
