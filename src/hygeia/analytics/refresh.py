"""Incremental refresh: the change feed keeps materialized tables exact.

:class:`ViewRefresher` is an event consumer: for each committed create, update or
delete of a type some materialized view reads, it replaces exactly that resource's
rows in the view's table (deleting them for a deletion), in feed order. The rows
and the consumer's cursor commit in one transaction, so a crash (kill -9) part way
loses nothing and applies nothing twice: the batch is handed over again.

The Parquet file is written by ``hygeia view materialize``; the table is what the
feed refreshes (re-run materialize for a fresh Parquet snapshot).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import orjson

from hygeia.analytics.materialize import Registered, registered, replace_rows
from hygeia.analytics.views import ViewError
from hygeia.server.events import EventContext, EventHost
from hygeia.store import ChangeBatch, as_sql

CONSUMER = "analytics-views"
log = logging.getLogger(__name__)


class ViewRefresher:
    """Applies the change feed to every materialized view's table."""

    name = CONSUMER
    types: Collection[str] | None = None
    from_start = False
    batch = 200

    def __init__(self, host: EventHost) -> None:
        self.host = host

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        views = registered(self.host.repository)
        by_type: dict[str, list[Registered]] = {}
        for view in views:
            by_type.setdefault(view.view.resource, []).append(view)
        with context.transaction() as session:
            plain = as_sql(session)
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

    def _apply(
        self, session: Any, target: Registered, key: str, resource: dict[str, Any] | None
    ) -> None:
        try:
            replace_rows(session, target.table, target.view, key, resource)
        except ViewError as error:  # the view cannot flatten this resource: it has no rows
            log.warning("view table %s: %s has no rows: %s", target.table, key, error)
            replace_rows(session, target.table, target.view, key, None)
