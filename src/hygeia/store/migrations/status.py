"""What a database records, read without changing it (``hygeia db status``).

Opening a repository lays out a new database and refuses one with pending
migrations; a status report must do neither, so it reads the version tables
over a plain read-only connection of its own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hygeia.store.migrations.runner import Step, recorded_versions


class NoDatabase(LookupError):
    """There is no database at the URL (a SQLite file that does not exist)."""


def recorded_at(url: str) -> dict[str, int]:
    """Every stream's recorded version at ``url``; empty when it holds no Hygeia tables."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].split("?", 1)[0]
        if not Path(path).is_file():
            raise NoDatabase(f"{path}: no such database file")
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return recorded_versions(Step("sqlite", connection))
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as server:
        return recorded_versions(Step("postgresql", server))
