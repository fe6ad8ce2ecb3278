"""Group commit: write work from many connections shares transactions, so one commit
(one fsync) carries all the work that arrived while the previous one was written.

A listener that must acknowledge only after its data is durable (MLLP, MQTT) would
otherwise pay one synchronous commit per message, and its connections would queue
for the single SQLite writer one by one. :class:`GroupCommit` runs each unit of work
(a function of a write :class:`~hygeia.store.Session`) on one committer thread: it
takes every unit waiting, runs them in one transaction and commits once, then
returns each unit's result to the thread that submitted it. Durability is unchanged:
:meth:`GroupCommit.run` returns only after the commit.

On PostgreSQL several committer threads do this side by side (``committers``), each
on a pooled connection of its own: a batch spends about half its time waiting for
the server (its look-ups, its flush, its commit), and with one committer every
message behind it waited too. While one batch waits, the next runs its units'
Python; PostgreSQL shares the WAL flush of commits that arrive together by itself.
Batches that run at once take their ``locks`` in sorted order (one statement), so
two of them cannot deadlock on those (ADR "group commit: concurrent committers on
PostgreSQL").

A unit that raises must not take the others down with it: the shared transaction
is then rolled back and each unit of the batch runs again in a transaction of its
own, so the failing one raises to its own caller and the rest commit. Units must
therefore write only through the session they are given (what they did is undone
by the rollback) and be safe to run again. Units with the same ``key`` (the same
message arriving twice at once) never share a batch: the second sees the first's
commit. The ``locks`` a unit names (:meth:`~hygeia.store.Session.lock` keys it
would take anyway) are taken for the whole batch first, in one statement on
PostgreSQL, instead of one round trip each as the units run. Likewise ``prepare``
(given at construction) reads what a whole batch's units will look up, from their
``hint``s, in a few statements after those locks are taken and before the units run
(on PostgreSQL a look-up per unit is a round trip per unit, on the one committer
thread). What it reads is for that transaction only: a batch that fails runs its
units alone without it, so units must still work when it found nothing.

On SQLite the committer first waits for the writer's turn (``write_turn()`` of the
host, when it has one: :meth:`~hygeia.store.Repository.write_turn`), and only then
takes the units waiting: with several serving processes the turn is often another
process's, and the units that arrive meanwhile join the batch instead of waiting for
the next one (ADR "SQLite's writer's turn across processes").
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Hashable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, Protocol, TypeVar

from hygeia.store import Session

log = logging.getLogger("hygeia.server.group_commit")

T = TypeVar("T")
MAX_BATCH = 200  # units in one transaction: bounds the work a failure makes run twice


class TransactionHost(Protocol):
    def transaction(self, *, flush_to_disk: bool = True
                    ) -> AbstractContextManager[Session]: ...


class _Unit(Generic[T]):
    __slots__ = ("done", "error", "hint", "key", "locks", "result", "work")

    def __init__(self, work: Callable[[Session], T], key: Hashable | None,
                 locks: Collection[str] = (), hint: Any = None) -> None:
        self.work = work
        self.key = key
        self.locks = locks
        self.hint = hint
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def finish(self, result: T) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class GroupCommit:
    """Runs units of write work from any thread in shared transactions (module docstring).

    ``committers``: how many transactions may be open at once, each on a committer
    thread of its own that takes every unit waiting when it is free. One for SQLite's
    single writer; more where the database runs writers side by side (PostgreSQL,
    :attr:`~hygeia.store.Repository.concurrent_writers`), so that one batch's Python
    work overlaps another's round trips and commit instead of waiting for them.

    ``start`` begins the committer threads; ``stop`` lets them finish what is queued.
    """

    def __init__(self, host: TransactionHost, *, name: str = "group-commit",
                 max_batch: int = MAX_BATCH, committers: int = 1,
                 prepare: Callable[[Session, list[Any]], None] | None = None) -> None:
        if committers < 1:
            raise ValueError("a group commit needs at least one committer")
        self.host = host
        self.name = name
        self.max_batch = max_batch
        self.committers = committers
        self.prepare = prepare  # (session, the batch's hints): module docstring
        self._ready = threading.Condition()  # guards what follows; notified on a change
        self._waiting: deque[_Unit[Any]] = deque()  # submitted, in no batch yet
        self._running: set[Hashable] = set()  # keys of the units in open batches
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.batches = 0  # how many transactions committed (for tests and metrics)
        self.units = 0

    def start(self) -> None:
        if not self._threads:
            self._stopping = False
            self._threads = [threading.Thread(target=self._loop, name=self._thread_name(n),
                                              daemon=True) for n in range(self.committers)]
            for thread in self._threads:
                thread.start()

    def _thread_name(self, number: int) -> str:
        return self.name if self.committers == 1 else f"{self.name}-{number}"

    def stop(self) -> None:
        if self._threads:
            with self._ready:
                self._stopping = True
                self._ready.notify_all()
            for thread in self._threads:
                thread.join()
            self._threads = []

    @property
    def queued(self) -> int:
        """Units submitted and not yet taken into a batch (for tests and metrics)."""
        with self._ready:
            return len(self._waiting)

    def run(self, work: Callable[[Session], T], key: Hashable | None = None,
            locks: Collection[str] = (), hint: Any = None) -> T:
        """Run ``work`` in a transaction shared with other units; its result once that
        transaction has committed (what it raised, if it failed alone). ``locks``: keys
        ``work`` locks, taken before it runs; ``hint``: what ``prepare`` is given of this
        unit (module docstring)."""
        if not self._threads:
            raise RuntimeError(f"{self.name} is not started")
        unit: _Unit[T] = _Unit(work, key, locks, hint)
        with self._ready:
            self._waiting.append(unit)
            self._ready.notify()
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result  # type: ignore[return-value]

    def _loop(self) -> None:
        while self._wait_for_work():
            with self._turn():  # take the units only once the writer's turn is ours
                with self._ready:
                    batch = self._take()
                if not batch:  # another committer took them meanwhile
                    continue
                try:
                    self._commit(batch)
                except BaseException as error:  # never leave a submitter waiting
                    log.exception("%s: a batch failed", self.name)
                    for unit in batch:
                        if not unit.done.is_set():
                            unit.fail(error)
                finally:
                    self._finished(batch)

    def _turn(self) -> AbstractContextManager[None]:
        # duck-typed: a host without a writer's turn (PostgreSQL's holds nothing anyway)
        write_turn = getattr(self.host, "write_turn", None)
        return nullcontext() if write_turn is None else write_turn()

    def _wait_for_work(self) -> bool:
        """Block until some waiting unit may go into a batch (its key is in no open
        batch); False to stop (once nothing is left waiting)."""
        with self._ready:
            while True:
                if any(unit.key is None or unit.key not in self._running
                       for unit in self._waiting):
                    return True
                if self._stopping and not self._waiting:
                    self._ready.notify_all()  # the other committers stop too
                    return False
                self._ready.wait()

    def _take(self) -> list[_Unit[Any]]:
        """Up to ``max_batch`` waiting units, in order, none with a key that another
        unit of the batch or of an open batch has (the same message twice: the second
        must see the first's commit); those stay waiting. Called holding ``_ready``."""
        batch: list[_Unit[Any]] = []
        left: deque[_Unit[Any]] = deque()
        while self._waiting and len(batch) < self.max_batch:
            unit = self._waiting.popleft()
            if unit.key is not None and unit.key in self._running:
                left.append(unit)
                continue
            if unit.key is not None:
                self._running.add(unit.key)
            batch.append(unit)
        left.extend(self._waiting)
        self._waiting = left
        return batch

    def _finished(self, batch: list[_Unit[Any]]) -> None:
        """Free the batch's keys: units held back for them may go now."""
        with self._ready:
            self._running.difference_update(unit.key for unit in batch if unit.key is not None)
            if self._waiting or self._stopping:
                self._ready.notify_all()

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        if len(batch) > 1:
            try:
                with self.host.transaction() as session:
                    self._lock_batch(session, batch)
                    results = [unit.work(session) for unit in batch]
            except Exception:  # one of them failed: each alone, below
                pass
            else:
                self._count(len(batch))
                for unit, result in zip(batch, results, strict=True):
                    unit.finish(result)
                return
        for unit in batch:
            try:
                with self.host.transaction() as session:
                    session.lock_all(unit.locks)
                    result = unit.work(session)
            except Exception as error:
                unit.fail(error)
            else:
                self._count(1)
                unit.finish(result)

    def _lock_batch(self, session: Session, batch: list[_Unit[Any]]) -> None:
        """Take the batch's locks, then ``prepare`` its look-ups; the locks go with the
        look-ups' first statement when there is a ``prepare`` (one round trip for both on
        PostgreSQL, :meth:`~hygeia.store.Session.lock_with_next`): its reads are what
        they guard."""
        locks = [lock for unit in batch for lock in unit.locks]
        if self.prepare is None:
            session.lock_all(locks)
            return
        session.lock_with_next(locks)
        self.prepare(session, [unit.hint for unit in batch])
        session.lock_all(())  # sends them now if prepare read nothing: held as units run

    def _count(self, units: int) -> None:
        with self._ready:  # committers count at once
            self.batches += 1
            self.units += units
