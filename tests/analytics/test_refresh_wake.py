"""The view refresher wakes the Parquet refresher only when a view is registered: with
none, a batch of the feed changes no table and so no file, and commits are not urgent
to it (both databases)."""

from __future__ import annotations

from pathlib import Path

from hygeia.analytics.materialize import materialize
from hygeia.analytics.refresh import CONSUMER, ParquetRefresher, ViewRefresher
from hygeia.analytics.views import compile_view
from hygeia.server import FhirService
from hygeia.server.events import EventContext
from hygeia.server.rest import write
from hygeia.store import Repository, claim_feed, feed_position

VIEW = {"resourceType": "ViewDefinition", "name": "wake_names", "status": "active",
        "resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}


def _patient(service: FhirService, id: str) -> None:
    with service.transaction() as session:
        write.update(session, "Patient", id, {"resourceType": "Patient", "id": id})


def _refresh(service: FhirService, refresher: ViewRefresher) -> None:
    """One batch of the feed handed to the refresher, as the event runner would."""
    position = claim_feed(service.repository, CONSUMER, "test", from_start=True)
    assert position is not None
    batch = service.repository.changes(position, 100, None)
    refresher.handle(batch, EventContext(service, CONSUMER, "test", batch, 30))


def test_the_parquet_refresher_is_woken_only_when_a_view_is_registered(
        repository: Repository, tmp_path: Path) -> None:
    service = FhirService(repository)
    parquet = ParquetRefresher(repository)  # not started: only its wake is looked at
    refresher = ViewRefresher(service, parquet)
    try:
        _patient(service, "a")
        _refresh(service, refresher)
        assert not parquet.woken.is_set()
        assert not refresher.urgent({"Patient"})  # the runner reads per skip_seconds
        assert feed_position(repository, CONSUMER) == repository.feed_horizon()
        materialize(repository, VIEW, compile_view(VIEW), tmp_path)
        _patient(service, "b")
        _refresh(service, refresher)
        assert parquet.woken.is_set()
        assert refresher.urgent({"Patient"})  # each commit wakes it again
        assert feed_position(repository, CONSUMER) == repository.feed_horizon()
    finally:
        service.close()

