"""Open a repository from a database URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from hygeia.store.base import Repository

DEFAULT_URL = "sqlite:///./hygeia.db"


def open_repository(url: str = DEFAULT_URL, *, migrate: bool = False) -> Repository:
    """Open ``sqlite:///path/file.db[?synchronous=normal]`` or ``postgresql://user@host:port/db``.

    A database with pending schema migrations is refused (``PendingMigrations``)
    unless ``migrate``, which applies them first (store/migrations/runner.py).

    >>> open_repository("sqlite:///./hygeia.db")  # doctest: +SKIP
    """
    if url.startswith("sqlite:///"):
        from hygeia.store.sqlite import SqliteRepository

        parsed = urlparse(url)
        options = parse_qs(parsed.query)
        path = url[len("sqlite:///"):].split("?", 1)[0]
        return SqliteRepository(path, synchronous=options.get("synchronous", ["full"])[0],
                                migrate=migrate)
    if url.startswith(("postgresql://", "postgres://")):
        from hygeia.store.postgres import PostgresRepository

        return PostgresRepository(url, migrate=migrate)
    raise ValueError(
        f"Unsupported database URL '{url}': use sqlite:///path/file.db or "
        "postgresql://user@host:port/dbname"
    )
