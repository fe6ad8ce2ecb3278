"""The change feed's safe horizon on PostgreSQL (docs/adr/0008-change-feed.md).

``nextval`` hands out ``seq`` before commit, so versions commit out of ``seq``
order: a reader that saw 11 committed while 10 was still being written would
move its cursor past 10 and never see it.  Writers therefore announce the seq
they hold, with transaction-scoped advisory locks (two-key form, a key space
no other Hygeia code uses), released by PostgreSQL itself at commit or
rollback, whatever happens to the process:

1. the *gate*, ``(-1, -1)`` shared, taken before the transaction's first ``nextval``;
2. the *mark*, the transaction's lowest seq split into two 32-bit keys,
   taken right after that ``nextval``.

A reader (:func:`safe_horizon`) reads the sequence's last value ``L`` first,
then the advisory locks of its database.  Any uncommitted seq ``<= L`` was
taken by a transaction that held the gate before ``L`` was read, so it is
among the gate's holders; if each holder shows its mark, the horizon is the
lowest mark minus one (or ``L`` when there is none).  A holder without a mark
is between its ``nextval`` and its mark (two statements): the reader asks again
a moment later.  Reading the rows afterwards, in a new snapshot, sees every
version up to the horizon, since PostgreSQL releases a transaction's locks only
after its commit is visible.

Writers never wait for the reader, nor each other: the gate is only ever taken
shared.  The cost is two statements per write transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from hygeia.store.feed import EVENT_COLUMNS, RETAINED_AFTER

GATE = (-1, -1)
_GATE_OIDS = (0xFFFFFFFF, 0xFFFFFFFF)  # how pg_locks shows (-1, -1): as unsigned oids
_ATTEMPTS = 50  # a writer stays between nextval and its mark for one round trip


def mark_keys(seq: int) -> tuple[int, int]:
    """``seq`` as the two signed 32-bit keys of ``pg_advisory_xact_lock(int, int)``."""
    high, low = seq >> 32, seq & 0xFFFFFFFF
    return high, low - (1 << 32) if low >= 1 << 31 else low


def announce_writer(execute: Any) -> None:
    """Take the gate (before the transaction's first ``nextval``)."""
    execute("SELECT pg_advisory_xact_lock_shared(?, ?)", GATE)


def mark_seq(execute: Any, seq: int, signal: str | None = None) -> None:
    """Mark the transaction's lowest seq (after its first ``nextval``), and queue the
    commit ``signal`` (a :func:`signal_payload`) in the same round trip."""
    if signal is None:
        execute("SELECT pg_advisory_xact_lock(?, ?)", mark_keys(seq))
    else:
        execute("SELECT pg_advisory_xact_lock(?, ?), pg_notify(?, ?)",
                (*mark_keys(seq), CHANNEL, signal))


# Commit signals (docs/adr/0019-commit-signals.md): a write transaction NOTIFYs
# this channel with the resource types it wrote; PostgreSQL delivers it to every
# listening connection only once the transaction commits (and never on rollback), so a
# change-feed consumer in another serving process wakes at once instead of at its poll.
CHANNEL = "hygeia_feed"
_PAYLOAD_BYTES = 7_900  # NOTIFY payloads must stay under 8,000 bytes


def signal_payload(source: str, words: Iterable[str]) -> str:
    """``source`` (the sending repository, whose own listener skips it) and ``words``
    (resource types, or a ``:``-prefixed name); words that do not fit are dropped and
    the payload says so with an empty list, which wakes every consumer."""
    text = ",".join(sorted(words))
    return f"{source} {text if len(text) < _PAYLOAD_BYTES else ''}"


def listen(url: str, source: str, stopping: threading.Event,
           wait_seconds: float = 1.0) -> Iterator[frozenset[str]]:
    """The words of each commit signal other repositories send, until ``stopping``
    (looked at every ``wait_seconds``); an empty set means "anything".

    The first is always an empty set, once LISTEN holds: a commit made before then (the
    server starting, the connection coming back after the database restarted) sent its
    signal to no one, and would otherwise wait for the consumers' polls."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f"LISTEN {CHANNEL}")
        yield frozenset()
        while not stopping.is_set():
            for note in connection.notifies(timeout=wait_seconds):
                sender, _, text = note.payload.partition(" ")
                if sender != source:
                    yield frozenset(text.split(",")) if text else frozenset()
                if stopping.is_set():
                    return


_LOCKS = ("SELECT pid, classid::bigint, objid::bigint FROM pg_locks WHERE locktype = "
          "'advisory' AND objsubid = 2 AND granted AND database = "
          "(SELECT oid FROM pg_database WHERE datname = current_database())")


def safe_horizon(connection: Any, sequence: str) -> tuple[int | None, int]:
    """(the highest seq below every uncommitted one, the highest seq handed out), read
    on an autocommit ``connection`` (each statement its own snapshot); the horizon is
    None while a writer stays unaccounted for (the caller reads nothing new this time)."""
    allocated = 0
    for _ in range(_ATTEMPTS):
        allocated = allocated_seq(connection, sequence)
        horizon = horizon_after(connection.execute(_LOCKS).fetchall(), allocated)
        if horizon is not None:
            return horizon, allocated
        time.sleep(0.001)
    return None, allocated


@dataclass(frozen=True, slots=True)
class FeedLook:
    """What one round trip saw: the horizon (None: a writer was unaccounted for), the
    highest seq handed out, the first rows of the wanted types after the cursor (some
    may lie above the horizon: ``store.feed.batch_of`` drops them) and the retention."""

    horizon: int | None
    allocated: int
    rows: list[tuple[Any, ...]]
    retained_after: int


def look_at_feed(connection: Any, sequence: str, after: int, limit: int,
                 wanted: Sequence[str] | None, timeout_ms: int | None) -> FeedLook:
    """The horizon and a batch after ``after``, in ONE round trip (a pipeline), asked
    again while a writer is between its ``nextval`` and its mark.

    The statements run in this order, in one READ COMMITTED transaction, so each takes
    a snapshot of its own, after the one before it ended: the sequence's last value,
    then the advisory locks (the horizon's argument above), then the rows, then the
    retention. The rows' snapshot is thus taken after the locks were read, as the
    separate reader transaction used to be: every version up to the horizon is in it.
    The retention is read last, so a pruning that removed rows before they were read
    is seen. Seven round trips per read (two for the horizon, five for a REPEATABLE
    READ transaction around two queries) became one (docs/adr/0028-feed-one-round-trip-reads.md).
    """
    for attempt in range(_ATTEMPTS):
        look = _look_once(connection, sequence, after, limit, wanted, timeout_ms)
        if look.horizon is not None or attempt == _ATTEMPTS - 1:
            return look
        time.sleep(0.001)
    raise AssertionError("unreachable")


def _look_once(connection: Any, sequence: str, after: int, limit: int,
               wanted: Sequence[str] | None, timeout_ms: int | None) -> FeedLook:
    kinds = "" if wanted is None else \
        f" AND res_type IN ({', '.join('%s' for _ in wanted)})"
    # BEGIN and COMMIT as plain statements: psycopg's transaction() would wait for the
    # server after each (three round trips); on an error the pool rolls the connection back
    with connection.pipeline():
        connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY")
        if timeout_ms is not None:
            connection.execute(f"SET LOCAL statement_timeout = {max(1, timeout_ms)}")
        last = connection.execute(f"SELECT last_value, is_called FROM {sequence}")
        locks = connection.execute(_LOCKS)
        rows = None if wanted == [] else connection.execute(
            f"{EVENT_COLUMNS} WHERE seq > %s{kinds} ORDER BY seq LIMIT %s",
            (after, *(wanted or ()), limit))
        retained = connection.execute(RETAINED_AFTER)
        connection.execute("COMMIT")
    last_value, is_called = last.fetchone()
    allocated = int(last_value) if is_called else 0
    kept = retained.fetchone()
    return FeedLook(horizon_after(locks.fetchall(), allocated), allocated,
                    [] if rows is None else rows.fetchall(),
                    int(kept[0]) if kept and kept[0] is not None else 0)


def allocated_seq(connection: Any, sequence: str) -> int:
    """The highest value ``sequence`` has handed out (0: none yet)."""
    last_value, is_called = connection.execute(
        f"SELECT last_value, is_called FROM {sequence}").fetchone()
    return int(last_value) if is_called else 0


def horizon_after(locks: Iterable[tuple[Any, Any, Any]], allocated: int) -> int | None:
    """The horizon that the advisory ``locks`` (pid, classid, objid), read after the
    sequence handed out ``allocated``, allow; None while a gate holder has no mark."""
    locks = list(locks)
    writers = {pid for pid, classid, objid in locks if (classid, objid) == _GATE_OIDS}
    marks: dict[int, int] = {}
    for pid, classid, objid in locks:
        if pid in writers and (classid, objid) != _GATE_OIDS:
            seq = (int(classid) << 32) | int(objid)
            marks[pid] = min(seq, marks.get(pid, seq))
    if writers - marks.keys():
        return None
    return min(marks.values(), default=allocated + 1) - 1
