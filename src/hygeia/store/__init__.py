"""Storage: one Repository interface with SQLite and PostgreSQL backends.

This module is the store's public API: code outside ``hygeia.store`` imports
from here only (``tests/test_architecture.py`` checks it). Names load on first
use, so a worker that needs the SQL helpers does not import both backends.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hygeia.store import audit_outbox, load_journal
    from hygeia.store.auth import AuthStore, Client, DuplicateEntry, Handle, SigningKey, User
    from hygeia.store.base import (
        ChangeBatch,
        ChangeEvent,
        FeedLost,
        Head,
        HistoryQuery,
        PoolUsage,
        PreparedRows,
        Referrer,
        Repository,
        RowsSource,
        SearchPage,
        Session,
        StoredVersion,
    )
    from hygeia.store.export_sql import ExportSlice
    from hygeia.store.factory import DEFAULT_URL, open_repository
    from hygeia.store.feed import (
        FeedClaimLost,
        FeedCursor,
        advance_feed,
        claim_feed,
        feed_contents,
        feed_cursors,
        feed_position,
        release_feed,
    )
    from hygeia.store.jobs import (
        CANCELLED,
        COMPLETED,
        FAILED,
        Job,
        JobStore,
        owner_gone,
        worker_name,
    )
    from hygeia.store.limits import StatementLimits, statement_limits
    from hygeia.store.migrations.model import Migration
    from hygeia.store.migrations.registry import register_stream
    from hygeia.store.migrations.runner import pending_of, statuses
    from hygeia.store.migrations.status import NoDatabase, recorded_at
    from hygeia.store.plain_sql import as_sql, reading, writing
    from hygeia.store.schema import (
        COMPOSITE_COMPONENTS,
        SCHEMA_VERSION,
        PendingMigrations,
        SchemaVersionError,
    )
    from hygeia.store.sql import prepare_rows

_HOMES = {
    "Migration": "hygeia.store.migrations.model",
    "register_stream": "hygeia.store.migrations.registry",
    "audit_outbox": "hygeia.store.audit_outbox",
    "load_journal": "hygeia.store.load_journal",
    "AuthStore": "hygeia.store.auth",
    "CANCELLED": "hygeia.store.jobs",
    "COMPLETED": "hygeia.store.jobs",
    "COMPOSITE_COMPONENTS": "hygeia.store.schema",
    "ChangeBatch": "hygeia.store.base",
    "ChangeEvent": "hygeia.store.base",
    "FeedClaimLost": "hygeia.store.feed",
    "FeedCursor": "hygeia.store.feed",
    "FeedLost": "hygeia.store.base",
    "advance_feed": "hygeia.store.feed",
    "claim_feed": "hygeia.store.feed",
    "feed_contents": "hygeia.store.feed",
    "feed_cursors": "hygeia.store.feed",
    "feed_position": "hygeia.store.feed",
    "release_feed": "hygeia.store.feed",
    "Client": "hygeia.store.auth",
    "DEFAULT_URL": "hygeia.store.factory",
    "DuplicateEntry": "hygeia.store.auth",
    "ExportSlice": "hygeia.store.export_sql",
    "FAILED": "hygeia.store.jobs",
    "Handle": "hygeia.store.auth",
    "Head": "hygeia.store.base",
    "HistoryQuery": "hygeia.store.base",
    "Job": "hygeia.store.jobs",
    "JobStore": "hygeia.store.jobs",
    "NoDatabase": "hygeia.store.migrations.status",
    "PendingMigrations": "hygeia.store.schema",
    "PoolUsage": "hygeia.store.base",
    "PreparedRows": "hygeia.store.base",
    "Referrer": "hygeia.store.base",
    "Repository": "hygeia.store.base",
    "RowsSource": "hygeia.store.base",
    "SCHEMA_VERSION": "hygeia.store.schema",
    "SchemaVersionError": "hygeia.store.schema",
    "SearchPage": "hygeia.store.base",
    "Session": "hygeia.store.base",
    "SigningKey": "hygeia.store.auth",
    "StatementLimits": "hygeia.store.limits",
    "StoredVersion": "hygeia.store.base",
    "User": "hygeia.store.auth",
    "as_sql": "hygeia.store.plain_sql",
    "open_repository": "hygeia.store.factory",
    "pending_of": "hygeia.store.migrations.runner",
    "prepare_rows": "hygeia.store.sql",
    "reading": "hygeia.store.plain_sql",
    "recorded_at": "hygeia.store.migrations.status",
    "statement_limits": "hygeia.store.limits",
    "statuses": "hygeia.store.migrations.runner",
    "worker_name": "hygeia.store.jobs",
    "owner_gone": "hygeia.store.jobs",
    "writing": "hygeia.store.plain_sql",
}

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "COMPOSITE_COMPONENTS",
    "DEFAULT_URL",
    "FAILED",
    "SCHEMA_VERSION",
    "AuthStore",
    "ChangeBatch",
    "ChangeEvent",
    "Client",
    "DuplicateEntry",
    "ExportSlice",
    "FeedClaimLost",
    "FeedCursor",
    "FeedLost",
    "Handle",
    "Head",
    "HistoryQuery",
    "Job",
    "JobStore",
    "Migration",
    "NoDatabase",
    "PendingMigrations",
    "PoolUsage",
    "PreparedRows",
    "Referrer",
    "Repository",
    "RowsSource",
    "SchemaVersionError",
    "SearchPage",
    "Session",
    "SigningKey",
    "StatementLimits",
    "StoredVersion",
    "User",
    "advance_feed",
    "as_sql",
    "audit_outbox",
    "claim_feed",
    "feed_contents",
    "feed_cursors",
    "feed_position",
    "load_journal",
    "open_repository",
    "owner_gone",
    "pending_of",
    "prepare_rows",
    "reading",
    "recorded_at",
    "register_stream",
    "release_feed",
    "statement_limits",
    "statuses",
    "worker_name",
    "writing",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'hygeia.store' has no attribute {name!r}")
    module = import_module(home)
    is_module = home.endswith('.' + name) and not hasattr(module, name)
    value = module if is_module else getattr(module, name)
    globals()[name] = value
    return value
