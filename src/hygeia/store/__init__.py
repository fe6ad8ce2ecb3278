"""Storage: one Repository interface with SQLite and PostgreSQL backends."""

from hygeia.store.base import (
    HistoryQuery,
    PoolUsage,
    Referrer,
    Repository,
    SearchPage,
    Session,
    StoredVersion,
)
from hygeia.store.factory import open_repository

__all__ = [
    "HistoryQuery",
    "PoolUsage",
    "Referrer",
    "Repository",
    "SearchPage",
    "Session",
    "StoredVersion",
    "open_repository",
]
