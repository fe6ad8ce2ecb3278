"""Runs each event consumer on a thread of its own, from its durable cursor.

Every serving process starts one :class:`EventRunner` per consumer; the
cursor's lease lets exactly one process at a time run a given consumer (on
PostgreSQL with N workers or machines, the others wait and take over when the
holder stops renewing, or at once when it died on the same host).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass

from hygeia.server.background import BackgroundLoop
from hygeia.server.events.consumer import EventConsumer, EventContext, EventHost
from hygeia.store import (
    ChangeBatch,
    FeedClaimLost,
    FeedLost,
    advance_feed,
    claim_feed,
    release_feed,
    worker_name,
)

log = logging.getLogger("hygeia.events")


@dataclass(frozen=True)
class EventTiming:
    """``poll_seconds``: how often an idle runner looks at the feed (a commit in this
    process of a type it wants wakes it at once); ``skip_seconds``: how soon it moves
    its cursor past versions of other types committed in this process (never sooner,
    so a busy feed of types it does not want costs it a few reads a second, not one
    per commit; at 0.25 s the imaging consumers' moves were 4-5% of a busy MLLP
    server's CPU); ``batch``: events per ``handle`` call; errors back off from
    ``backoff_seconds`` doubling up to ``max_backoff_seconds``."""

    poll_seconds: float = 1.0
    skip_seconds: float = 1.0
    batch: int = 500
    lease_seconds: float = 30.0
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


class EventRunner(BackgroundLoop):
    """One consumer's loop: claim the cursor, read a batch, hand it over, advance."""

    def __init__(self, host: EventHost, consumer: EventConsumer,
                 timing: EventTiming | None = None) -> None:
        self.host = host
        self.consumer = consumer
        self.timing = timing or EventTiming()
        self.owner = worker_name()
        self._position: int | None = None  # the cursor, while this runner holds it
        self._claimed_at = 0.0
        self._failures = 0
        self._behind = False  # versions it does not want were committed since its last read
        self._looked_at = 0.0  # when it last began a look at the feed (monotonic)
        super().__init__()
        self.thread_name = f"hygeia-events-{self.consumer.name}"

    def wants(self, types: Collection[str] | None) -> bool:
        """Whether versions of ``types`` (None: unknown) may be events for this consumer."""
        wanted = self.consumer.types
        return types is None or wanted is None or not set(wanted).isdisjoint(types)

    def notice(self, types: Collection[str] | None) -> None:
        """Versions of ``types`` committed (in this process, or heard of from another):
        look now if it wants them, else move past them within ``skip_seconds``.

        Only while it holds the cursor: a runner whose claim failed (another process
        holds it) tries again at its poll, or when woken explicitly, not on every
        commit. Claiming on each commit cost a write transaction per commit in every
        process but one, and a runner marked behind without the cursor claimed in a
        tight loop (round 1's extra CPU with ``--workers 2``)."""
        if not self.holding:
            return
        if self.wants(types) and self._urgent(types):
            self.wake()
        else:
            self._behind = True

    def _urgent(self, types: Collection[str] | None) -> bool:
        """The consumer's optional ``urgent`` (consumer.py), else True."""
        urgent = getattr(self.consumer, "urgent", None)
        return urgent is None or bool(urgent(types))

    @property
    def holding(self) -> bool:
        """Whether this runner held the cursor at its last look (its lease may run out
        meanwhile: advancing checks the owner)."""
        return self._position is not None

    def rest(self) -> None:
        """Sleep until woken, the poll is due, or (when behind) ``skip_seconds`` passed
        since its last look at the feed.

        Counted from the last look, not from now: marked behind by a commit made while
        it was looking (on a busy feed, nearly always), it returned at once and looked
        again, a read and a cursor move in a tight loop that held one of the pool's
        connections a third of the time for a consumer with nothing to do (py-spy of
        benchmarks.clinical's stream on PostgreSQL)."""
        poll = getattr(self.consumer, "poll_seconds", None) or self.timing.poll_seconds
        deadline = time.monotonic() + poll
        skip = self.timing.skip_seconds
        while not self.stopping.is_set():
            now = time.monotonic()
            skip_due = self._looked_at + skip
            if now >= deadline or (self._behind and now >= skip_due):
                return
            until = min(deadline, skip_due) if self._behind else deadline
            if self.woken.wait(min(until - now, skip)):
                self.woken.clear()
                self._gather()
                return

    def _gather(self) -> None:
        """Woken by a commit, wait the consumer's ``gather_seconds`` (if it has one) so
        the commits arriving meanwhile are read as one batch: for a consumer whose cost
        is mostly per batch, many small commits otherwise cost a batch each."""
        gather = getattr(self.consumer, "gather_seconds", None)
        if gather:
            self.stopping.wait(gather)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then let another process claim the cursor at once."""
        super().stop(timeout)
        if self._position is not None:
            try:
                release_feed(self.host.repository, self.consumer.name, self.owner)
            except Exception:  # the lease runs out on its own
                log.warning("could not release the cursor of %s", self.consumer.name,
                            exc_info=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.step()
                self._failures = 0
            except FeedLost as error:
                log.error("event consumer %s stopped: %s", self.consumer.name, error)
                return
            except Exception:
                self._failures += 1
                self._position = None  # claim again: the lease may have been lost
                log.exception("event consumer %s failed (attempt %d)", self.consumer.name,
                              self._failures)
                self.stopping.wait(self._backoff())
                continue
            if not busy:
                self.rest()

    def _backoff(self) -> float:
        return min(self.timing.max_backoff_seconds,
                   self.timing.backoff_seconds * 2 ** (self._failures - 1))

    def step(self) -> bool:
        """Handle one batch if there is one; True when more may be waiting at once."""
        self._behind = False  # whatever it was behind on is read now, or by the holder
        self._looked_at = time.monotonic()
        position = self._claimed_position()
        if position is None:
            return False
        limit = getattr(self.consumer, "batch", None) or self.timing.batch
        batch = self._pending(position)
        if batch is not None:  # read while the batch before it committed
            self._handle(batch)
            return True  # what committed meanwhile is read at once
        batch = self.host.repository.changes(position, limit, self.consumer.types)
        if batch.events:
            self._handle(batch)
        elif batch.position > position:  # only versions of other types: move past them
            self._advance(batch.position, flush_to_disk=False)
        return len(batch.events) == limit

    def _pending(self, position: int) -> ChangeBatch | None:
        """The consumer's next batch after ``position`` if it read one ahead (its optional
        ``pending``), else None: the runner reads the feed."""
        pending = getattr(self.consumer, "pending", None)
        batch = pending(position) if pending is not None else None
        return batch if batch is not None and batch.events else None

    def _claimed_position(self) -> int | None:
        """The cursor's position, claiming (or renewing) it when half the lease is gone."""
        if self._position is not None and \
                time.monotonic() - self._claimed_at < self.timing.lease_seconds / 2:
            return self._position
        self._position = claim_feed(self.host.repository, self.consumer.name, self.owner,
                                    lease_seconds=self.timing.lease_seconds,
                                    from_start=self.consumer.from_start)
        self._claimed_at = time.monotonic()
        return self._position

    def _handle(self, batch: ChangeBatch) -> None:
        context = EventContext(self.host, self.consumer.name, self.owner, batch,
                               self.timing.lease_seconds)
        try:
            self.consumer.handle(batch, context)
        except FeedClaimLost:
            self._position = None
            raise
        if context.position < batch.position:  # not (or not all) advanced by the consumer
            # at least once (module consumer.py): a power cut that loses this move hands
            # the events over again, as a crash before it would, so the commit need not
            # wait for the disk (a flush per batch of the device-alarm consumer)
            self._advance(batch.position, flush_to_disk=False)
        self._position = batch.position
        self._claimed_at = time.monotonic()  # advancing renewed the lease

    def _advance(self, position: int, *, flush_to_disk: bool = True) -> None:
        """Move the cursor to ``position`` (past versions it skipped, ``flush_to_disk``
        False: a power cut that loses the move only makes it skip them again)."""
        with self.host.transaction(flush_to_disk=flush_to_disk) as session:
            advance_feed(session, self.consumer.name, self.owner, position,
                         lease_seconds=self.timing.lease_seconds)
        self._position = position
        self._claimed_at = time.monotonic()
