"""PostgreSQL: statistics and visibility are kept up to date in the background as data grows."""

from __future__ import annotations

import time

import psycopg
import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import StoredVersion, open_repository
from hygeia.store.postgres import PostgresRepository


@pytest.mark.postgres
def test_tables_are_vacuumed_and_analyzed_after_growing(postgres_url: str) -> None:
    repository = open_repository(postgres_url)
    assert isinstance(repository, PostgresRepository)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            before = _counts(connection)
        rows = IndexRows(tokens=[("status", None, "final")] * 1)
        for batch in range(3):
            with repository.transaction() as session:
                for n in range(2_500):
                    session.put(StoredVersion("Observation", f"s{batch}-{n}", 1, 1, False,
                                              b'{"resourceType":"Observation"}', "PUT", 0),
                                rows)
        deadline = time.monotonic() + 30
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            while not all(now > then for now, then in zip(_counts(connection), before,
                                                          strict=True)):
                assert time.monotonic() < deadline, "no VACUUM (ANALYZE) ran"
                time.sleep(0.2)
    finally:
        repository.close()


def _counts(connection: psycopg.Connection) -> tuple[int, int]:
    row = connection.execute(
        "SELECT vacuum_count, analyze_count FROM pg_stat_user_tables "
        "WHERE relname = 'token_index'").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
