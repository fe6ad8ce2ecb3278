"""A PostgreSQL write transaction sends BEGIN (and its settings) with its first
statement and COMMIT with its flush's last: a create is one pipeline (the server
answers twice: the keys, then the rest), not three, and a transaction that sends
nothing sends no BEGIN either."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import Conflict
from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository, StoredVersion
from tests.store.test_postgres_locks import every_trip, held_advisory_locks, patient

pytestmark = pytest.mark.postgres


def test_a_create_is_one_pipeline_and_commits(
        postgres_repository: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    with every_trip(postgres_repository, monkeypatch) as traces, \
            postgres_repository.transaction() as session:
        session.put(patient("p1"), IndexRows())
    assert [trips.counted for trips in traces] == [1]  # type: ignore[attr-defined]
    # (one Sync: BEGIN, the keys' allocation (read mid-pipeline), the rows and COMMIT;
    # it was three: BEGIN, the flush, COMMIT)
    with postgres_repository.reader() as session:
        assert session.current("Patient", "p1") is not None


def test_a_transaction_that_sends_nothing_begins_nothing(
        postgres_repository: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    with every_trip(postgres_repository, monkeypatch) as traces, \
            postgres_repository.transaction() as session:
        status = session.connection.info.transaction_status.name  # type: ignore[attr-defined]
    assert status == "IDLE"
    assert [trips.counted for trips in traces] == [0]  # type: ignore[attr-defined]


def test_settings_go_with_begin_inside_the_transaction(
        postgres_repository: Repository) -> None:
    with postgres_repository.transaction(flush_to_disk=False) as session:
        row = session.execute("SELECT current_setting('synchronous_commit')").fetchone()
        assert session.connection.info.transaction_status.name == "INTRANS"  # type: ignore[attr-defined]
    assert row[0] == "off"
    with postgres_repository.transaction() as session:  # SET LOCAL: this one only
        row = session.execute("SELECT current_setting('synchronous_commit')").fetchone()
    assert row[0] == "on"


def test_a_failure_after_statements_rolls_back_and_the_connection_serves_again(
        postgres_repository: Repository) -> None:
    with pytest.raises(RuntimeError), postgres_repository.transaction() as session:
        session.put(patient("gone"), IndexRows())
        session.flush()  # written, inside the transaction
        raise RuntimeError("refused")
    with postgres_repository.transaction() as session:
        status = session.connection.info.transaction_status.name  # type: ignore[attr-defined]
        session.put(patient("kept"), IndexRows())
    assert status == "IDLE"  # the failed one was rolled back, not left open
    with postgres_repository.reader() as session:
        assert session.current("Patient", "gone") is None
        assert session.current("Patient", "kept") is not None


def test_a_commit_whose_flush_fails_leaves_no_trace(postgres_repository: Repository) -> None:
    """The flush fails inside the pipeline that carries COMMIT (a create of a resource
    another transaction created): a Conflict, nothing of it stored, and the connection
    rolled back for the next transaction."""
    with postgres_repository.transaction() as session:
        session.put(patient("twice"), IndexRows())
    other = StoredVersion("Patient", "twice", 1, 5_000, False,
                          b'{"resourceType":"Patient","id":"twice","active":true}', "PUT", 0)
    with pytest.raises(Conflict), postgres_repository.transaction() as session:
        session.put(patient("alongside"), IndexRows())
        session.put(other, IndexRows())
    with postgres_repository.transaction() as session:
        status = session.connection.info.transaction_status.name  # type: ignore[attr-defined]
        current = session.current("Patient", "twice")
    assert status == "IDLE"  # rolled back: a fresh transaction, not the failed one
    assert current is not None and b"active" not in bytes(current.content or b"")
    with postgres_repository.reader() as session:
        assert session.current("Patient", "alongside") is None


def test_locks_taken_first_go_with_begin(
        postgres_repository: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group commit's batch of one takes its unit's locks first (``lock_all``): BEGIN
    and they are one round trip (it was two), and they are held when it returns."""
    url = postgres_repository.url  # type: ignore[attr-defined]
    with every_trip(postgres_repository, monkeypatch) as traces, \
            postgres_repository.transaction() as session:
        session.lock_all(["one", "two"])
        trips = traces[0].count
        pid = session.connection.info.backend_pid  # type: ignore[attr-defined]
        held = held_advisory_locks(url, pid)
    assert (trips, held) == (1, 2)
