"""The two steps of a read's AuditEvent: committed to the outbox before the answer,
moved into a searchable resource afterwards, exactly once."""

from __future__ import annotations

import orjson
import pytest

from hygeia.server import FhirService
from hygeia.store import Repository
from hygeia.store import audit_outbox as outbox_table
from hygeia.store.base import HistoryQuery
from hygeia.store.plain_sql import reading, writing
from tests.helpers import body, call, patient


def _stored_events(service: FhirService) -> int:
    with service.repository.reader() as session:
        return len(session.history(HistoryQuery(resource_type="AuditEvent", count=1000)))


def _in_outbox(service: FhirService) -> int:
    with reading(service.repository) as session:
        return int(session.execute("SELECT COUNT(*) FROM audit_outbox").fetchone()[0])


def test_a_read_is_committed_before_it_is_answered(audited: FhirService) -> None:
    call(audited, "PUT", "Patient/p", {**patient("Ng"), "id": "p"})
    audited.audit.catch_up()
    before = _stored_events(audited)
    call(audited, "GET", "Patient/p")
    # answered: its event is committed, in the outbox or (if the mover was quick) moved
    assert _in_outbox(audited) + _stored_events(audited) == before + 1
    audited.audit.catch_up()
    with reading(audited.repository) as session:
        assert not outbox_table.waiting(session)
    assert _stored_events(audited) == before + 1


def test_reading_the_trail_through_the_api_sees_every_committed_event(
        audited: FhirService) -> None:
    for _ in range(3):
        call(audited, "GET", "Patient", query=[("name", "nobody")])
    found = body(call(audited, "GET", "AuditEvent", query=[("_count", "100")]))
    searches = [e for e in found.get("entry", [])
                if e["resource"]["subtype"][0]["code"] == "search-type"]
    assert len(searches) == 3


def test_each_row_becomes_exactly_one_resource(repository: Repository) -> None:
    events = [orjson.dumps({"n": n}) for n in range(7)]
    with writing(repository) as session:
        outbox_table.append(session, events)
    with writing(repository) as session:
        first = outbox_table.take(session, 5, repository.dialect)
    with pytest.raises(RuntimeError), writing(repository) as session:
        outbox_table.take(session, 5, repository.dialect)
        raise RuntimeError("crash while moving")  # rolled back: the rows stay
    with writing(repository) as session:
        rest = outbox_table.take(session, 5, repository.dialect)
    assert first + rest == events  # oldest first, none lost, none twice
