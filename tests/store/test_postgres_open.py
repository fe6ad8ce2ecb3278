"""Opening a PostgreSQL database that already has the schema takes no table lock."""

from __future__ import annotations

import psycopg
import pytest

from hygeia.store import Repository, open_repository

pytestmark = pytest.mark.postgres


def test_opening_beside_a_writer_holding_its_tables_waits_for_nothing(
        postgres_repository: Repository, postgres_url: str) -> None:
    """A writer holds the resource table (ROW EXCLUSIVE, as every write does) for the
    whole open. Running the schema's ``CREATE INDEX IF NOT EXISTS`` statements would
    wait for it (they take a SHARE lock even when the index exists): the open gives up
    after lock_timeout instead of stalling."""
    with psycopg.connect(postgres_url) as writer:
        writer.execute("LOCK TABLE resource IN ROW EXCLUSIVE MODE")
        separator = "&" if "?" in postgres_url else "?"
        impatient = f"{postgres_url}{separator}options=-c%20lock_timeout%3D2000"
        repository = open_repository(impatient)
        try:
            with repository.reader() as session:
                assert session.current("Patient", "nobody") is None
        finally:
            repository.close()
        writer.rollback()


def test_a_dropped_index_is_created_again_on_open(postgres_repository: Repository,
                                                  postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("DROP INDEX date_index_high")
        open_repository(postgres_url).close()
        found = admin.execute("SELECT to_regclass('date_index_high')").fetchone()
    assert found is not None and found[0] is not None
