"""The store primitives behind referential integrity: ``referrers`` and
``heads(for_share=True)``, on both backends."""

from __future__ import annotations

import threading
import time

import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Referrer, Repository, StoredVersion, open_repository

BASE = "http://h/fhir/"


def version(type: str, id: str, number: int = 1, *, deleted: bool = False) -> StoredVersion:
    content = None if deleted else f'{{"resourceType":"{type}","id":"{id}"}}'.encode()
    return StoredVersion(type, id, number, 1_000 + number, deleted, content, "PUT", 0)


def pointing(*references: tuple[str, str, str | None]) -> IndexRows:
    """Index rows of ``subject`` references: (type, id, absolute url or None)."""
    return IndexRows(references=[("subject", kind, id, url, None)
                                 for kind, id, url in references])


def test_referrers_finds_relative_and_own_absolute_references(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("Patient", "p"), IndexRows())
        session.put(version("Observation", "rel"), pointing(("Patient", "p", None)))
        session.put(version("Observation", "abs"),
                    pointing(("Patient", "p", f"{BASE}Patient/p")))
        session.put(version("Observation", "elsewhere"),
                    pointing(("Patient", "p", "http://other/fhir/Patient/p")))
        session.put(version("Observation", "unrelated"), pointing(("Patient", "q", None)))
    with repository.reader() as session:
        found = session.referrers([("Patient", "p")], BASE, 10)
    assert found == [Referrer(("Observation", "abs"), ("Patient", "p")),
                     Referrer(("Observation", "rel"), ("Patient", "p"))]


def test_referrers_respects_the_limit_and_ignores_deleted(repository: Repository) -> None:
    with repository.transaction() as session:
        for n in range(5):
            session.put(version("Observation", f"o{n}"), pointing(("Patient", "p", None)))
    with repository.transaction() as session:
        session.put(version("Observation", "o0", 2, deleted=True), IndexRows())
        # the session's own (buffered) deletion is seen
        assert len(session.referrers([("Patient", "p")], BASE, 10)) == 4
        assert len(session.referrers([("Patient", "p")], BASE, 2)) == 2
        assert session.referrers([("Patient", "none")], BASE, 10) == []


def test_heads_for_share_sees_existing_and_deleted(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("Patient", "a"), IndexRows())
        session.put(version("Patient", "b", 1), IndexRows())
        session.put(version("Patient", "b", 2, deleted=True), IndexRows())
    with repository.transaction() as session:
        heads = session.heads([("Patient", "a"), ("Patient", "b"), ("Patient", "c")],
                              for_share=True)
    assert {key: head.deleted for key, head in heads.items()} == {
        ("Patient", "a"): False, ("Patient", "b"): True}


@pytest.mark.postgres
def test_share_lock_holds_a_writer_until_commit(postgres_url: str) -> None:
    """A transaction that share-locked a resource keeps a concurrent delete of it waiting
    (PostgreSQL only: SQLite serialises writers without row locks)."""
    with open_repository(postgres_url) as repository:
        _share_lock_holds_a_writer(repository)


def _share_lock_holds_a_writer(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("Patient", "lock-a"), IndexRows())
    events: list[str] = []
    locked = threading.Event()

    def deleter() -> None:
        locked.wait(5)
        with repository.transaction() as session:
            session.current("Patient", "lock-a", for_update=True)
            events.append("deleter locked")

    thread = threading.Thread(target=deleter)
    thread.start()
    with repository.transaction() as session:
        session.heads([("Patient", "lock-a")], for_share=True)
        locked.set()
        time.sleep(0.5)
        events.append("sharer commits")
    thread.join(5)
    assert events == ["sharer commits", "deleter locked"]
