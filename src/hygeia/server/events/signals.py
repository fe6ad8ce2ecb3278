"""Wakes this process's change-feed consumers when another process commits.

A commit made through this process's service wakes its consumers directly
(``FhirService.wake_events``); one made by another serving process (``--workers``
N, a second machine, ``hygeia load``) is heard here, where the database can tell:
on PostgreSQL each write transaction NOTIFYs the types it wrote and this thread
LISTENs (store/postgres/feed.py, docs/adr/0019-commit-signals.md). Without
it, such a commit waited for the consumer's poll. SQLite has no such signal: its
consumers poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hygeia.server.background import BackgroundLoop
from hygeia.store import Repository

log = logging.getLogger("hygeia.events")
RETRY_SECONDS = 1.0


class CommitSignals(BackgroundLoop):
    """Hands the words of each commit signal other processes send to ``heard`` (an
    empty set: "anything"); listens again a second after the connection fails."""

    thread_name = "hygeia-commit-signals"

    def __init__(self, repository: Repository,
                 heard: Callable[[frozenset[str]], None]) -> None:
        self.repository = repository
        self.heard = heard
        super().__init__()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                for words in self.repository.listen(self.stopping):
                    self.heard(words)
            except Exception:  # the database restarted, say: the consumers still poll
                log.warning("not listening for other processes' commits; trying again",
                            exc_info=True)
            self.stopping.wait(RETRY_SECONDS)
