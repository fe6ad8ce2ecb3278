"""The change feed: every committed version, in order, read with a durable cursor.

Every write path (REST, transactions, ``hygeia load``, ``$import``, audit, the
server's own writes) stores a row in ``resource_version`` with a global ``seq``;
the feed *is* those rows, so it costs the writers nothing and cannot disagree
with the data.  A consumer keeps its cursor, the highest ``seq`` it has
handled, in ``feed_cursor``, and advances it in the same transaction as its
own writes (:func:`advance_feed`), so a crash either keeps both or neither:
exactly once for a consumer that writes only to this database, at least once
for one that acts elsewhere (it must be idempotent).

Reading past a version still being written would skip it for ever (PostgreSQL
hands out ``seq`` before commit), so a reader only reads up to the backend's
safe horizon, :meth:`Repository.feed_horizon` (docs/adr/0008-change-feed.md).

Exceptions::

    RuntimeError
     +-- FeedLost        the cursor points at history that is no longer there
     +-- FeedClaimLost   another process took the cursor over (its lease ran out)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from hygeia.fhir.datetime import now_us
from hygeia.store.base import (
    CREATE,
    DELETE,
    UPDATE,
    ChangeBatch,
    ChangeEvent,
    FeedLost,
    Repository,
    Session,
)
from hygeia.store.jobs import owner_gone
from hygeia.store.plain_sql import as_sql, reading, writing


@dataclass(frozen=True, slots=True)
class FeedCursor:
    """One consumer's row of ``feed_cursor`` (``hygeia`` status pages show them)."""

    name: str
    position: int
    owner: str | None
    lease_until: int | None
    updated: int


class FeedClaimLost(RuntimeError):
    """The cursor is held by another owner now (this one's lease ran out); the
    transaction that tried to advance it must roll back."""


def read_changes(session: Session, after: int, limit: int, types: Collection[str] | None,
                 horizon: int, *, newest: int) -> ChangeBatch:
    """Up to ``limit`` events with ``after < seq <= horizon`` of the ``types`` wanted (all
    when None), oldest first, read in ``session``'s snapshot.

    The caller guarantees that every version up to ``horizon`` is committed or gone,
    and that no seq above ``newest`` was ever handed out.
    """
    sql_session = as_sql(session)
    row = sql_session.execute(RETAINED_AFTER).fetchone()
    retained_after = int(row[0]) if row and row[0] is not None else 0
    wanted = sorted(types) if types is not None else None
    rows: list[tuple[Any, ...]] = []
    if horizon > after and wanted != []:
        kinds = "" if wanted is None else f" AND res_type IN ({', '.join('?' for _ in wanted)})"
        rows = sql_session.execute(
            f"{EVENT_COLUMNS} WHERE seq > ? AND seq <= ?{kinds} ORDER BY seq LIMIT ?",
            (after, horizon, *(wanted or ()), limit)).fetchall()
    return batch_of(rows, after, limit, horizon, retained_after=retained_after, newest=newest)


EVENT_COLUMNS = "SELECT seq, res_type, res_id, version, deleted, last_updated FROM resource_version"
RETAINED_AFTER = "SELECT MAX(retained_after) FROM feed_retention"


def batch_of(rows: Sequence[tuple[Any, ...]], after: int, limit: int, horizon: int, *,
             retained_after: int, newest: int) -> ChangeBatch:
    """The batch that ``rows`` (``EVENT_COLUMNS``, in seq order, the first ``limit`` of the
    wanted types after ``after``) make up to ``horizon``; rows above it are dropped.

    Rows read past the horizon let a backend read them in the same round trip as the
    horizon itself (postgres/feed.py): when one of the ``limit`` rows lies above it,
    every wanted row up to it was among them, so the batch ends at the horizon.
    Raises :class:`FeedLost` when ``after`` lies outside the retained history."""
    _check_retained(after, retained_after, newest)
    if horizon <= after:
        return ChangeBatch((), after)
    events = tuple(_event(row) for row in rows if int(row[0]) <= horizon)
    full = len(events) == limit
    return ChangeBatch(events, events[-1].seq if full else max(after, horizon))


_CONTENT_CHUNK = 500  # seqs per query of feed_contents


def feed_contents(session: Session, events: Collection[ChangeEvent]) -> dict[int, bytes]:
    """The stored JSON of each event's own version, by seq, in as few queries as the
    events need (one per 500): a consumer that reads every event's resource pays one
    round trip per batch, not one per event. A deletion has no content of its own
    and is left out, as is any version that is gone."""
    seqs = sorted(event.seq for event in events if event.interaction != DELETE)
    sql = as_sql(session)
    found: dict[int, bytes] = {}
    for start in range(0, len(seqs), _CONTENT_CHUNK):
        chunk = seqs[start:start + _CONTENT_CHUNK]
        rows = sql.execute(
            "SELECT seq, content FROM resource_version WHERE seq IN "
            f"({', '.join('?' for _ in chunk)}) AND content IS NOT NULL", chunk).fetchall()
        found.update((int(seq), bytes(content)) for seq, content in rows)
    return found


def _event(row: tuple[Any, ...]) -> ChangeEvent:
    seq, kind, id, version, deleted, last_updated = row
    interaction = DELETE if deleted else CREATE if int(version) == 1 else UPDATE
    return ChangeEvent(int(seq), str(kind), str(id), int(version), interaction,
                       int(last_updated))


def _check_retained(after: int, retained_after: int, newest: int) -> None:
    if after < retained_after:
        raise FeedLost(f"The change feed keeps versions after seq {retained_after}; a cursor "
                       f"at {after} has missed events. Rebuild the consumer's state and "
                       "start it again.")
    if after > newest:
        raise FeedLost(f"A cursor at seq {after} is ahead of the newest version ({newest}): "
                       "the database was restored from an older copy. Rebuild the "
                       "consumer's state and start it again.")


def claim_feed(repository: Repository, name: str, owner: str, *, lease_seconds: float = 30,
               from_start: bool = True) -> int | None:
    """Hold consumer ``name``'s cursor for ``owner`` and return its position, or None
    while another live owner holds it.

    A new cursor starts at 0 (every version ever stored) or, unless ``from_start``, at
    the feed's horizon (only what is written from now on).  The lease is renewed by
    claiming again or by :func:`advance_feed`; an owner found dead on this host
    (``store.jobs.owner_gone``) loses it at once, so a restarted server resumes
    without waiting for the lease to run out.
    """
    now = now_us()
    if _held_by_another(repository, name, owner, now):
        return None
    start = 0 if from_start else repository.feed_horizon()
    with writing(repository) as session:
        session.execute("INSERT INTO feed_cursor (name, position, owner, lease_until, updated) "
                        "VALUES (?, ?, NULL, NULL, ?) ON CONFLICT (name) DO NOTHING",
                        (name, start, now))
        lock = " FOR UPDATE" if repository.dialect == "postgresql" else ""
        position, holder, lease_until = session.execute(
            f"SELECT position, owner, lease_until FROM feed_cursor WHERE name = ?{lock}",
            (name,)).fetchone()
        if not _free(holder, lease_until, owner, now):
            return None
        session.execute("UPDATE feed_cursor SET owner = ?, lease_until = ? WHERE name = ?",
                        (owner, now + int(lease_seconds * 1_000_000), name))
        return int(position)


def _held_by_another(repository: Repository, name: str, owner: str, now: int) -> bool:
    """Whether another live owner holds the cursor, read in a read-only snapshot: a
    runner without the cursor claims again every second in every other serving process,
    and a write transaction per try took SQLite's writer's turn from the listeners'
    group commits (with ``--workers 2`` such claims were most of the waiting runners'
    time). What it reads only spares a write: a free cursor is claimed, checked again,
    in the write transaction."""
    with reading(repository) as session:
        row = session.execute("SELECT owner, lease_until FROM feed_cursor WHERE name = ?",
                              (name,)).fetchone()
    return row is not None and not _free(row[0], row[1], owner, now)


def _free(holder: str | None, lease_until: int | None, owner: str, now: int) -> bool:
    """Whether ``owner`` may take a cursor held by ``holder`` until ``lease_until``."""
    return holder is None or holder == owner or lease_until is None \
        or int(lease_until) <= now or owner_gone(holder)


def advance_feed(session: Session, name: str, owner: str, position: int, *,
                 lease_seconds: float = 30) -> None:
    """Move the cursor to ``position`` inside ``session``'s transaction (and renew the
    lease): it commits or rolls back with the consumer's own writes.

    Raises :class:`FeedClaimLost` when ``owner`` no longer holds the cursor or it
    already stands further on, so the caller's transaction rolls back instead of
    handling the same events twice.
    """
    now = now_us()
    cursor = as_sql(session).execute(
        "UPDATE feed_cursor SET position = ?, lease_until = ?, updated = ? "
        "WHERE name = ? AND owner = ? AND position <= ?",
        (position, now + int(lease_seconds * 1_000_000), now, name, owner, position))
    if cursor.rowcount != 1:
        raise FeedClaimLost(f"The change feed cursor '{name}' is no longer held by {owner}.")


def release_feed(repository: Repository, name: str, owner: str) -> None:
    """Let another process claim the cursor at once (a clean stop)."""
    with writing(repository) as session:
        session.execute("UPDATE feed_cursor SET owner = NULL, lease_until = NULL "
                        "WHERE name = ? AND owner = ?", (name, owner))


def feed_position(repository: Repository, name: str) -> int | None:
    """How far consumer ``name`` has handled the feed (None: it never claimed it)."""
    with reading(repository) as session:
        row = session.execute("SELECT position FROM feed_cursor WHERE name = ?",
                              (name,)).fetchone()
    return None if row is None else int(row[0])


def feed_cursors(repository: Repository) -> list[FeedCursor]:
    """Every consumer's cursor, by name (for status pages: lag = horizon - position)."""
    with reading(repository) as session:
        rows = session.execute("SELECT name, position, owner, lease_until, updated "
                               "FROM feed_cursor ORDER BY name").fetchall()
    return [FeedCursor(str(name), int(position), owner,
                       None if lease is None else int(lease), int(updated))
            for name, position, owner, lease, updated in rows]
