"""Storage: one Repository interface with SQLite and PostgreSQL backends."""

from hygeia.store.base import (
    ChangeBatch,
    ChangeEvent,
    FeedLost,
    HistoryQuery,
    PoolUsage,
    Repository,
    SearchPage,
    Session,
    StoredVersion,
)
from hygeia.store.factory import open_repository
from hygeia.store.feed import (
    FeedClaimLost,
    FeedCursor,
    advance_feed,
    claim_feed,
    feed_cursors,
    feed_position,
    release_feed,
)

__all__ = [
    "ChangeBatch",
    "ChangeEvent",
    "FeedClaimLost",
    "FeedCursor",
    "FeedLost",
    "HistoryQuery",
    "PoolUsage",
    "Repository",
    "SearchPage",
    "Session",
    "StoredVersion",
    "advance_feed",
    "claim_feed",
    "feed_cursors",
    "feed_position",
    "open_repository",
    "release_feed",
]
