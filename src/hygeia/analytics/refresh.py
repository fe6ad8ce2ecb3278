"""Incremental refresh: the change feed keeps materialized tables exact.

:class:`ViewRefresher` is an event consumer: for each committed create, update or
delete of a type some materialized view reads, it replaces exactly that resource's
rows in the view's table (deleting them for a deletion), in feed order. The rows
and the consumer's cursor commit in one transaction, so a crash (kill -9) part way
loses nothing and applies nothing twice: the batch is handed over again.

Each view's Parquet file follows its table: :class:`ParquetRefresher` (a loop of
the first serving process, started and stopped with the server as a
``Listener``) rewrites a file whose feed position is behind the table's, at most
once per ``interval`` seconds per view under steady writes, from one snapshot of
the table and the cursor (:func:`hygeia.analytics.materialize.write_parquet`).
It looks when the refresher commits in this process, and every ``poll`` seconds
otherwise (the refresher may run in another worker), so a file left behind by a
crash is rewritten at the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

import orjson

from hygeia.analytics.materialize import (
    CONSUMER,
    Registered,
    ensure_registry,
    registered,
    registered_in,
    replace_rows,
    take_turn,
    write_parquet,
)
from hygeia.analytics.views import ViewError
from hygeia.server.background import BackgroundLoop
from hygeia.server.events import EventContext, EventHost
from hygeia.store import ChangeBatch, Repository, as_sql, feed_position

__all__ = ["CONSUMER", "ParquetRefresher", "ViewRefresher"]
log = logging.getLogger(__name__)


class ViewRefresher:
    """Applies the change feed to every materialized view's table."""

    name = CONSUMER
    types: Collection[str] | None = None
    from_start = False
    batch = 200
    # woken by a commit, wait this long so the commits of that moment come as one batch
    # (its cost is mostly per batch: the registry read and a transaction); a view's
    # table lags that much more
    gather_seconds = 0.05

    def __init__(self, host: EventHost, parquet: ParquetRefresher | None = None) -> None:
        self.host = host
        self.parquet = parquet
        self._views = True  # a view registered at the last batch (unknown yet: say so)

    def urgent(self, types: Collection[str] | None) -> bool:
        """Woken at once by a commit only while a view is registered; without one the
        runner reads the feed within its ``skip_seconds`` (a view registered meanwhile
        lags that much once): a transaction per commit held a pool connection a third
        of the time in benchmarks.clinical's stream, for nothing."""
        return self._views

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        """Apply the batch to every view's table, with the cursor's move.

        The commit does not wait for the disk: the rows and the cursor commit together,
        so a crash that loses them hands the same events over again, and replacing a
        resource's rows twice leaves them as once (the events themselves are durable).
        The Parquet refresher is woken only when a view is registered: with none, a
        batch changes no table and so no file (it still polls for files left behind)."""
        ensure_registry(self.host.repository)
        with context.transaction(flush_to_disk=False) as session:
            plain = as_sql(session)
            # after a registration's turn, never before: its view is then in the list
            take_turn(plain)
            by_type: dict[str, list[Registered]] = {}
            for view in registered_in(plain):
                by_type.setdefault(view.view.resource, []).append(view)
            for event in batch.events:
                targets = [v for v in by_type.get(event.resource_type, ()) if event.seq > v.since]
                if not targets:
                    continue
                resource = None
                if event.interaction != "delete":
                    stored = session.version(event.resource_type, event.id, event.version)
                    if stored is not None and stored.content is not None:
                        resource = orjson.loads(stored.content)
                key = f"{event.resource_type}/{event.id}"
                for target in targets:
                    self._apply(plain, target, key, resource)
        self._views = bool(by_type)
        if self.parquet is not None and by_type:
            self.parquet.wake()

    def _apply(
        self, session: Any, target: Registered, key: str, resource: dict[str, Any] | None
    ) -> None:
        try:
            replace_rows(session, target.table, target.view, key, resource)
        except ViewError as error:  # the view cannot flatten this resource: it has no rows
            log.warning("view table %s: %s has no rows: %s", target.table, key, error)
            replace_rows(session, target.table, target.view, key, None)


class ParquetRefresher(BackgroundLoop):
    """Keeps each materialized view's Parquet file as current as its table (module
    docstring); a ``Listener`` of the serving process."""

    name = "analytics-parquet"
    thread_name = "hygeia-analytics-parquet"

    def __init__(self, repository: Repository, interval: float = 5.0, poll: float = 1.0
                 ) -> None:
        super().__init__()
        self.repository = repository
        self.interval = interval
        self.poll = poll
        self._written: dict[str, float] = {}  # view name -> when its file was last written

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                wait = self.step()
            except Exception:
                log.exception("rewriting a materialized view's Parquet file failed")
                wait = self.interval
            self.sleep(wait)

    def step(self) -> float:
        """Rewrite the files that are behind and due; how long to sleep before looking
        again (sooner when a file is behind but not yet due)."""
        cursor = feed_position(self.repository, CONSUMER)
        wait = self.poll
        for view in registered(self.repository):
            at = max(view.since, cursor or 0)
            if view.parquet_seq >= at or self.stopping.is_set():
                continue
            due = self._written.get(view.name, 0.0) + self.interval - time.monotonic()
            if due > 0:
                wait = min(wait, due)
                continue
            write_parquet(self.repository, view, CONSUMER)
            self._written[view.name] = time.monotonic()
        return wait
