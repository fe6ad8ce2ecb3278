"""WAL checkpoints on a thread of their own, off the commit path.

In WAL mode a commit appends pages to the log; a *checkpoint* copies them back
into the database file (and, with ``synchronous=FULL``, syncs it).  SQLite's
automatic checkpoint runs inside whichever commit crosses 1,000 log pages, so
that writer waits for it: during ingest that was a slice of every few
commits.  Here the writer only flags that it committed; this thread runs a
PASSIVE checkpoint (it never blocks readers or the writer) at most once per
``interval``.  sqlite3 releases the GIL for the whole call, so on a multi-core
machine the copy overlaps the next request's Python work.  The writer keeps a
high automatic threshold as a safety net should this thread fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger("hygeia.store")

# the writer's own automatic checkpoint, only reached if this thread falls behind
SAFETY_NET_PAGES = 16384


class Checkpointer:
    """Checkpoints the WAL in the background after commits, at most once per ``interval``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float = 0.5) -> None:
        self._connection = connect()
        self._interval = interval
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="hygeia-sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Called by the writer after each commit: there are new log pages to copy."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as error:  # a later round retries; the safety net still holds
                log.warning("WAL checkpoint failed: %s", error)
            time.sleep(self._interval)

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._connection.close()
