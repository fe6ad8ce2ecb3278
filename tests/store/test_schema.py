"""The storage layout version: a database of another layout is refused, never written into."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hygeia.store import Repository, open_repository
from hygeia.store.postgres import PostgresRepository
from hygeia.store.schema import SCHEMA_VERSION, SchemaVersionError
from hygeia.store.sqlite import SqliteRepository


def _set_version(repository: Repository, version: int) -> str:
    """Rewrite the recorded layout version behind the repository's back; returns its URL."""
    if isinstance(repository, SqliteRepository):
        path = repository.path
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE hygeia_schema SET version = ?", (version,))
        return f"sqlite:///{path}"
    import psycopg

    assert isinstance(repository, PostgresRepository)
    url = repository.url
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE hygeia_schema SET version = %s", (version,))
    return str(url)


def test_a_database_of_another_layout_is_refused(repository: Repository) -> None:
    url = _set_version(repository, SCHEMA_VERSION - 1)
    try:
        with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION - 1}"):
            open_repository(url)
    finally:
        _set_version(repository, SCHEMA_VERSION)
    open_repository(url).close()  # the same layout opens


def test_the_cli_says_why_it_will_not_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    repository = open_repository(url)
    _set_version(repository, 1)
    repository.close()
    result = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--db", url,
                             "--quiet", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "storage layout version 1" in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr
