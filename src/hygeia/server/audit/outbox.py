"""The outbox of AuditEvents that are not part of a write: group-committed by one thread,
then moved into AuditEvent resources by another.

Reads, searches, operations, failures and sign-ins change nothing, so there is
no transaction of theirs to put their AuditEvent in.  Each request hands its
event to the outbox and gets a future; one background thread takes everything
queued and stores it in ONE transaction (a group commit), so N concurrent
requests cost one commit, not N.  While a batch commits, the next one queues.

What is committed is the event's JSON in the ``audit_outbox`` table
(store/audit_outbox.py), one plain row each; the :class:`Mover` turns rows
into searchable AuditEvent resources in large batches, off the requests' path,
and whoever reads the trail first has the mover catch up, so an auditor never
misses an event that was committed.

Durability is the caller's choice (``Settings.audit_durable``): the service
waits on the futures before it answers, so a response never leaves before its
AuditEvent is committed (a crash loses no event of an answered request); or it
does not wait, and a crash loses the events still queued (those of the last
commit's duration, typically a few milliseconds of requests).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("hygeia.audit")

MAX_BATCH = 1000  # events per transaction: bounds one commit's size after a backlog


class Outbox:
    """Queue events; one thread stores them in batches with ``store`` (one transaction)."""

    def __init__(self, store: Callable[[list[dict[str, Any]]], None]) -> None:
        self._store = store
        self._queue: list[tuple[dict[str, Any], Future[None]]] = []
        self._ready = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def put(self, event: dict[str, Any]) -> Future[None]:
        """Queue one event; the future completes when its batch has committed."""
        done: Future[None] = Future()
        with self._ready:
            if self._closing:
                raise RuntimeError("the audit outbox is closed")
            self._queue.append((event, done))
            if self._thread is None:  # started on first use: no thread for a silent service
                self._thread = threading.Thread(target=self._run, name="hygeia-audit",
                                                daemon=True)
                self._thread.start()
                # a serving process that exits normally stores what is queued first
                atexit.register(self.close)
            self._ready.notify()
        return done

    def close(self, timeout: float = 30.0) -> None:
        """Store what is queued, then stop the thread (a clean shutdown loses nothing)."""
        with self._ready:
            self._closing = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            atexit.unregister(self.close)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closing:
                    self._ready.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._commit(batch)

    def _commit(self, batch: list[tuple[dict[str, Any], Future[None]]]) -> None:
        try:
            self._store([event for event, _ in batch])
        except Exception as error:  # the waiting requests fail; the thread carries on
            log.exception("could not store %d audit events", len(batch))
            for _, done in batch:
                done.set_exception(error)
            return
        for _, done in batch:
            done.set_result(None)


# outbox rows turned into resources per transaction: on SQLite the move holds the one
# writer, and the requests' outbox commits queue behind it, so it stays short
MOVE_BATCH = 100
IDLE_SECONDS = 1.0  # the mover looks at the table at least this often (other processes')
# woken, the mover lets events gather this long first: moving each event on its own would
# take the writer between every two requests' commits (measured: 1.3 ms of waiting added
# to each sequential read)
GATHER_SECONDS = 0.25


class Mover:
    """Turns outbox rows into resources with ``move`` (one transaction per call), on a
    thread woken by :meth:`wake`, and at once with :meth:`catch_up`."""

    def __init__(self, move: Callable[[int], int]) -> None:
        self._move = move  # moves up to n rows in one transaction; returns how many
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one move at a time in this process
        self._stopping = False
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="hygeia-audit-move",
                                                    daemon=True)
                    self._thread.start()
        self._wake.set()

    def catch_up(self) -> None:
        """Move everything waiting now (before the trail is read, and at shutdown)."""
        with self._lock:
            while self._move(MOVE_BATCH) == MOVE_BATCH:
                pass

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self.catch_up()

    def _run(self) -> None:
        while not self._stopping:
            if self._wake.wait(IDLE_SECONDS) and not self._stopping:
                time.sleep(GATHER_SECONDS)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # the rows stay in the outbox; the next round retries
                log.exception("could not move audit events out of the outbox")
