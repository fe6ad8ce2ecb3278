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


@pytest.mark.postgres
def test_the_vacuum_does_not_wait_for_a_pooled_connection(postgres_url: str) -> None:
    """With every pooled connection busy (requests, consumers, deliveries), the VACUUM
    still runs, on a connection of its own, and takes none of theirs."""
    from psycopg_pool import ConnectionPool

    from hygeia.store.postgres.repository import StatisticsKeeper

    open_repository(postgres_url).close()  # the tables exist
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        before = _counts(connection)
    with ConnectionPool(postgres_url, min_size=1, max_size=1, open=True,
                        kwargs={"autocommit": True}) as pool, pool.connection():
        StatisticsKeeper(postgres_url, first=1).written(1)  # the pool's one connection is held
        deadline = time.monotonic() + 20
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            while not all(now > then for now, then in zip(_counts(connection), before,
                                                          strict=True)):
                assert time.monotonic() < deadline, "the VACUUM waited for the pool"
                time.sleep(0.2)
