"""PostgreSQL's flush of a transaction Bundle of 8 monitor readings (48 versions, more
than ``PIPELINED_VERSIONS``: by COPY, ADR 0046): every version's content exact, all or
nothing."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import Conflict
from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository, StoredVersion
from hygeia.store.postgres.repository import PIPELINED_VERSIONS

pytestmark = pytest.mark.postgres
BUNDLE = 48  # a transaction Bundle of 8 monitor readings of 6 vital signs


def observation(id: str, number: int = 1, content: bytes | None = None) -> StoredVersion:
    body = content if content is not None else (
        f'{{"resourceType":"Observation","id":"{id}","status":"final"}}'.encode())
    return StoredVersion("Observation", id, number, 1_000 + number, False, body, "PUT", 0)


def rows_of(id: str) -> IndexRows:
    return IndexRows(tokens=[("status", None, "final")],
                     references=[("subject", "Patient", id, None, None)],
                     quantities=[("value-quantity", 72, 72, "http://unitsofmeasure.org",
                                  "/min", "/min")])


def stored(repository: Repository) -> dict[str, int]:
    with repository.reader() as session:
        execute = session.execute  # type: ignore[attr-defined]
        return {table: execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("resource_version", "resource", "token_index",
                              "reference_index", "quantity_index")}


def test_each_version_keeps_its_own_content_byte_for_byte(
        postgres_repository: Repository) -> None:
    """Neighbours do not bleed into each other, a deletion stays NULL and an empty
    content stays empty."""
    assert BUNDLE > PIPELINED_VERSIONS  # (the COPY path)
    contents = [f'{{"id":"o{number}","note":"{"é" * number}\\\\ \\""}}'.encode()
                for number in range(BUNDLE - 2)] + [b"", bytes(range(256))]
    with postgres_repository.transaction() as session:
        for number, content in enumerate(contents):
            session.put(observation(f"o{number}", content=content), IndexRows())
        session.put(StoredVersion("Observation", "o0", 2, 2_000, True, None, "DELETE", 0),
                    IndexRows())
    with postgres_repository.reader() as session:
        rows = session.execute(  # type: ignore[attr-defined]
            "SELECT res_id, version, content FROM resource_version").fetchall()
    found = {(id, version): None if content is None else bytes(content)
             for id, version, content in rows}
    assert found == {**{(f"o{number}", 1): content for number, content in enumerate(contents)},
                     ("o0", 2): None}


def test_a_bundle_sized_flush_that_conflicts_stores_nothing(
        postgres_repository: Repository) -> None:
    """One resource created meanwhile by another writer: 409, and none of the other
    versions, resources or index rows stay."""
    with postgres_repository.transaction() as session:
        session.put(observation("o7"), rows_of("p7"))
    before = stored(postgres_repository)
    with pytest.raises(Conflict), postgres_repository.transaction() as session:
        for number in range(BUNDLE):  # o7 as a creation again: a unique key taken
            session.put(observation(f"o{number}"), rows_of(f"p{number}"))
    assert stored(postgres_repository) == before
