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
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

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
    (looked at every ``wait_seconds``); an empty set means "anything"."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f"LISTEN {CHANNEL}")
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
        horizon = _horizon_after(connection, allocated)
        if horizon is not None:
            return horizon, allocated
        time.sleep(0.001)
    return None, allocated


def allocated_seq(connection: Any, sequence: str) -> int:
    """The highest value ``sequence`` has handed out (0: none yet)."""
    last_value, is_called = connection.execute(
        f"SELECT last_value, is_called FROM {sequence}").fetchone()
    return int(last_value) if is_called else 0


def _horizon_after(connection: Any, allocated: int) -> int | None:
    locks = connection.execute(_LOCKS).fetchall()
    writers = {pid for pid, classid, objid in locks if (classid, objid) == _GATE_OIDS}
    marks: dict[int, int] = {}
    for pid, classid, objid in locks:
        if pid in writers and (classid, objid) != _GATE_OIDS:
            seq = (int(classid) << 32) | int(objid)
            marks[pid] = min(seq, marks.get(pid, seq))
    if writers - marks.keys():
        return None
    return min(marks.values(), default=allocated + 1) - 1
