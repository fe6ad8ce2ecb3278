"""Group commit: write work from many connections shares transactions, so one commit
(one fsync) carries all the work that arrived while the previous one was written.

A listener that must acknowledge only after its data is durable (MLLP, MQTT) would
otherwise pay one synchronous commit per message, and its connections would queue
for the single SQLite writer one by one. :class:`GroupCommit` runs each unit of work
(a function of a write :class:`~hygeia.store.Session`) on one committer thread: it
takes every unit waiting, runs them in one transaction and commits once, then
returns each unit's result to the thread that submitted it. Durability is unchanged:
:meth:`GroupCommit.run` returns only after the commit.

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
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Collection, Hashable
from contextlib import AbstractContextManager
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

    ``start`` begins the committer thread; ``stop`` lets it finish what is queued.
    """

    def __init__(self, host: TransactionHost, *, name: str = "group-commit",
                 max_batch: int = MAX_BATCH,
                 prepare: Callable[[Session, list[Any]], None] | None = None) -> None:
        self.host = host
        self.name = name
        self.max_batch = max_batch
        self.prepare = prepare  # (session, the batch's hints): module docstring
        self._queue: queue.SimpleQueue[_Unit[Any] | None] = queue.SimpleQueue()
        self._held: list[_Unit[Any]] = []  # units whose key was in the last batch
        self._thread: threading.Thread | None = None
        self.batches = 0  # how many transactions committed (for tests and metrics)
        self.units = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def run(self, work: Callable[[Session], T], key: Hashable | None = None,
            locks: Collection[str] = (), hint: Any = None) -> T:
        """Run ``work`` in a transaction shared with other units; its result once that
        transaction has committed (what it raised, if it failed alone). ``locks``: keys
        ``work`` locks, taken before it runs; ``hint``: what ``prepare`` is given of this
        unit (module docstring)."""
        if self._thread is None:
            raise RuntimeError(f"{self.name} is not started")
        unit: _Unit[T] = _Unit(work, key, locks, hint)
        self._queue.put(unit)
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result  # type: ignore[return-value]

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._commit(batch)
            except BaseException as error:  # never leave a submitter waiting
                log.exception("%s: a batch failed", self.name)
                for unit in batch:
                    if not unit.done.is_set():
                        unit.fail(error)

    def _next_batch(self) -> list[_Unit[Any]] | None:
        """The units waiting now (at least one: blocks until there is one); None to stop."""
        waiting, self._held = self._held, []
        if not waiting:
            first = self._queue.get()
            if first is None:
                return None
            waiting.append(first)
        while len(waiting) < self.max_batch:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                break
            if unit is None:
                self._queue.put(None)  # stop after this batch
                break
            waiting.append(unit)
        batch: list[_Unit[Any]] = []
        keys: set[Hashable] = set()
        for unit in waiting:
            if unit.key is not None and unit.key in keys:
                self._held.append(unit)
                continue
            if unit.key is not None:
                keys.add(unit.key)
            batch.append(unit)
        return batch

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        if len(batch) > 1:
            try:
                with self.host.transaction() as session:
                    session.lock_all(lock for unit in batch for lock in unit.locks)
                    if self.prepare is not None:
                        self.prepare(session, [unit.hint for unit in batch])
                    results = [unit.work(session) for unit in batch]
            except Exception:  # one of them failed: each alone, below
                pass
            else:
                self.batches += 1
                self.units += len(batch)
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
                self.batches += 1
                self.units += 1
                unit.finish(result)
