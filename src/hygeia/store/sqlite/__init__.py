"""SQLite backend: the embedded default (WAL, one writer, readers never blocked)."""

from hygeia.store.sqlite.repository import SqliteRepository

__all__ = ["SqliteRepository"]
