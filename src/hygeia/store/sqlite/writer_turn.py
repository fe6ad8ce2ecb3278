"""The writer's turn: the right to open a write transaction on one SQLite database,
across the threads of a process and across processes.

SQLite lets one connection write at a time. Inside a process a lock queues the
threads. Across processes (``hygeia serve --workers 2``, a ``hygeia`` command beside a
server) SQLite's own answer is ``BEGIN IMMEDIATE`` with a busy timeout, and its busy
handler polls: it sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 then 100 ms between
tries, whenever the lock was freed meanwhile. Two serving processes committing in
turn therefore kept waking each other late: the second process's committer slept up
to 100 ms with its messages waiting, so ``--workers 2`` stored less than one process
(ADR "SQLite's writer's turn across processes").

So each process first takes an exclusive ``flock`` on a file beside the database
(``<database>-writer.lock``) and only then says ``BEGIN IMMEDIATE``. A waiter tries the
lock again every 2 ms at most (a blocking ``flock`` would wake at once but could not
time out: a holder stopped in a debugger would hang every writer), so it starts within a
couple of milliseconds of the holder's ``COMMIT``, and gives up with SQLite's own
"database is locked" after the busy timeout. The kernel releases the lock when its
holder's file is closed, so a process killed mid-write (even ``kill -9``) leaves no
stale turn behind. A writer that does not take the lock (an older Hygeia, the
``sqlite3`` shell) is still kept out by ``BEGIN IMMEDIATE`` and its busy timeout, as
before: the turn only decides who asks first. The file is never removed (removing a lock
file while another process waits on it would let a third lock a new file of the same
name).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from contextlib import AbstractContextManager
from types import TracebackType

LOCK_SUFFIX = "-writer.lock"
# a waiter tries again after 0.1 ms, doubling to 2 ms: a commit's fsync takes longer,
# so it starts at most a few per cent late, and gives up after the busy timeout
# (a holder stopped with SIGSTOP or in a debugger fails writers, never hangs them)
FIRST_PAUSE = 0.0001
LAST_PAUSE = 0.002


class WriterTurn(AbstractContextManager[None]):
    """A re-entrant lock held by one thread of one process at a time (module docstring).

    ``path``: the database file; None for an in-memory database (no other process can
    open it, so the thread lock alone is the turn).  ``waits`` and ``waited_seconds``
    count the times another process held the turn when this one asked, and how long
    it waited (cheap: measured only when the lock was taken)."""

    def __init__(self, path: str | None, timeout: float = 30.0) -> None:
        self.path = None if path is None else path + LOCK_SUFFIX
        self.timeout = timeout
        self._thread_lock = threading.RLock()
        self._depth = 0  # nesting of the holding thread: the file is locked at depth 1
        self._descriptor: int | None = None
        self._opened_by = 0  # the process that opened the descriptor
        self.waits = 0
        self.waited_seconds = 0.0
        _OPEN_TURNS.add(self)

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._depth == 0 and self.path is not None:
            try:
                self._lock_file()
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._descriptor is not None:
                fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def held(self) -> bool:
        """Whether some thread of this process holds the turn now."""
        return self._depth > 0

    def close(self) -> None:
        """Close the lock file (waits for the turn: no write is left half done)."""
        with self._thread_lock:
            self._forget()
        _OPEN_TURNS.discard(self)

    def _lock_file(self) -> None:
        descriptor = self._open()
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        began = time.perf_counter()
        pause = FIRST_PAUSE
        while True:  # a blocking flock cannot time out: polled, at most LAST_PAUSE late
            time.sleep(pause)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.perf_counter() - began > self.timeout:
                    raise sqlite3.OperationalError(
                        "database is locked: another process has held its writer's turn "
                        f"for over {self.timeout:g} s") from None
                pause = min(pause * 2, LAST_PAUSE)
        self.waits += 1
        self.waited_seconds += time.perf_counter() - began

    def _open(self) -> int:
        """The lock file's descriptor, opened by this process (not one inherited
        through a fork: a lock is shared by every copy of the descriptor)."""
        if self._descriptor is None or self._opened_by != os.getpid():
            assert self.path is not None
            self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                       0o600)
            self._opened_by = os.getpid()
        return self._descriptor

    def _forget(self) -> None:
        if self._descriptor is not None and self._opened_by == os.getpid():
            os.close(self._descriptor)
        self._descriptor = None


_OPEN_TURNS: weakref.WeakSet[WriterTurn] = weakref.WeakSet()


def _close_in_child() -> None:
    """A forked child closes its copies of the parent's lock files: the kernel keeps a
    lock until every copy of its descriptor is closed, so a child living on would
    otherwise keep the parent's turn held after the parent died."""
    for turn in list(_OPEN_TURNS):
        if turn._descriptor is not None:
            os.close(turn._descriptor)
            turn._descriptor = None


os.register_at_fork(after_in_child=_close_in_child)
