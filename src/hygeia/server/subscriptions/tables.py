"""The server's own tables for subscriptions, a migration stream named "subscriptions".

``subscription_state``: one row per Subscription the change feed has seen: its
status as the server keeps it, the feed position it started at, how many events
it was notified of (``events``, the Backport IG's eventsSinceSubscriptionStart),
the highest event number delivered by rest-hook, the delivery failures in a row,
when to try again, when the last notification went out (heartbeats), and the
delivery lease (one process at a time sends a subscription's notifications, in
order).  ``subscription_notification``: one row per event notified, numbered per
subscription from 1, kept so ``$events`` can replay them.  ``subscription_token``:
websocket binding tokens (``$get-ws-binding-token``), readable by any process.
``subscription_owner``: the access token claims a Subscription was created with
(when authorization is on), which every notified resource must pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hygeia.store import (
    Migration,
    Repository,
    as_sql,
    owner_gone,
    reading,
    register_stream,
    writing,
)

STREAM = "subscriptions"
LIVE = ("requested", "active")  # statuses that are notified of events

register_stream(STREAM, [
    Migration(1, "subscription state, notifications and websocket tokens", statements=(
        "CREATE TABLE IF NOT EXISTS subscription_state ("
        "id {ctext} PRIMARY KEY, status {text} NOT NULL, start_seq {bigint} NOT NULL, "
        "events {bigint} NOT NULL, delivered {bigint} NOT NULL, failures {bigint} NOT NULL, "
        "next_attempt {bigint} NOT NULL, last_sent {bigint} NOT NULL, error {text}, "
        "owner {text}, lease_until {bigint}, channel {text} NOT NULL, "
        "heartbeat {bigint} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS subscription_notification ("
        "subscription {ctext} NOT NULL, number {bigint} NOT NULL, seq {bigint} NOT NULL, "
        "res_type {ctext} NOT NULL, res_id {ctext} NOT NULL, version {bigint} NOT NULL, "
        "interaction {text} NOT NULL, at {bigint} NOT NULL, "
        "PRIMARY KEY (subscription, number))",
        "CREATE TABLE IF NOT EXISTS subscription_token ("
        "token {ctext} PRIMARY KEY, subscription {ctext} NOT NULL, expires {bigint} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS subscription_owner ("
        "id {ctext} PRIMARY KEY, access {text} NOT NULL)",
    )),
])

_STATE = ("id, status, start_seq, events, delivered, failures, next_attempt, last_sent, "
          "error, owner, lease_until")


@dataclass(frozen=True, slots=True)
class State:
    """One row of ``subscription_state``."""

    id: str
    status: str
    start_seq: int
    events: int
    delivered: int
    failures: int
    next_attempt: int
    last_sent: int
    error: str | None
    owner: str | None
    lease_until: int | None


@dataclass(frozen=True, slots=True)
class Notified:
    """One row of ``subscription_notification``: event ``number`` of a subscription."""

    number: int
    seq: int
    resource_type: str
    id: str
    version: int
    interaction: str
    at: int


def _state(row: Any) -> State:
    start_seq, events, delivered, failures, next_attempt, last_sent = map(int, row[2:8])
    return State(str(row[0]), str(row[1]), start_seq, events, delivered, failures,
                 next_attempt, last_sent, None if row[8] is None else str(row[8]),
                 None if row[9] is None else str(row[9]),
                 None if row[10] is None else int(row[10]))


def state_of(session: object, id: str) -> State | None:
    row = as_sql(session).execute(f"SELECT {_STATE} FROM subscription_state WHERE id = ?",
                                  (id,)).fetchone()
    return None if row is None else _state(row)


def live_states(session: object) -> list[State]:
    rows = as_sql(session).execute(
        f"SELECT {_STATE} FROM subscription_state WHERE status IN (?, ?) ORDER BY id",
        LIVE).fetchall()
    return [_state(row) for row in rows]


def live_states_and_owners(session: object) -> tuple[list[State], dict[str, str]]:
    """:func:`live_states` and their creators' access (:func:`owners`) in one query:
    the feed asks for both on every batch."""
    columns = ", ".join(f"s.{column.strip()}" for column in _STATE.split(","))
    rows = as_sql(session).execute(
        f"SELECT {columns}, o.access FROM subscription_state s LEFT JOIN "
        "subscription_owner o ON o.id = s.id WHERE s.status IN (?, ?) ORDER BY s.id",
        LIVE).fetchall()
    owners = {str(row[0]): str(row[-1]) for row in rows if row[-1] is not None}
    return [_state(row) for row in rows], owners


def read_state(repository: Repository, id: str) -> State | None:
    with reading(repository) as session:
        return state_of(session, id)


def start(session: object, id: str, status: str, seq: int) -> None:
    """A Subscription first seen at ``seq``: notified of events after it."""
    as_sql(session).execute(
        "INSERT INTO subscription_state (id, status, start_seq, events, delivered, failures, "
        "next_attempt, last_sent, error, channel, heartbeat) "
        "VALUES (?, ?, ?, 0, 0, 0, 0, 0, NULL, '', 0)", (id, status, seq))


def set_channel(session: object, id: str, channel: str, heartbeat_us: int) -> None:
    """What delivery needs to know without reading the Subscription (see :func:`due`)."""
    as_sql(session).execute("UPDATE subscription_state SET channel = ?, heartbeat = ? "
                            "WHERE id = ?", (channel, heartbeat_us, id))


def set_status(session: object, id: str, status: str, error: str | None = None) -> None:
    """A new status (set by the client or by delivery); a fresh start clears failures."""
    reset = ", failures = 0, next_attempt = 0" if status == "requested" else ""
    as_sql(session).execute(
        f"UPDATE subscription_state SET status = ?, error = ?{reset} WHERE id = ?",
        (status, error, id))


class Recording:
    """Notifications recorded while a batch of the feed is matched, written together
    (:meth:`write`): one multi-row insert and one count update per subscription, where
    writing each at once cost two statements per event."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.events: dict[str, int] = {}  # subscription -> its newest event number
        self.written: dict[str, list[Notified]] = {}  # by subscription, oldest first

    def add(self, state: State, number: int, event: Any) -> None:
        """Event ``number`` of ``state``'s subscription is ``event`` (a ChangeEvent)."""
        self.rows.append((state.id, number, event.seq, event.resource_type, event.id,
                          event.version, event.interaction, event.at))
        self.events[state.id] = number

    def write(self, session: object) -> None:
        """Write what was added since the last write (in the caller's transaction)."""
        if self.rows:
            as_sql(session).execute_many(
                "INSERT INTO subscription_notification (subscription, number, seq, "
                "res_type, res_id, version, interaction, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.rows)
        for id, events in self.events.items():
            set_events(session, id, events)
        for row in self.rows:
            self.written.setdefault(row[0], []).append(Notified(*row[1:]))
        self.rows, self.events = [], {}


def set_events(session: object, id: str, events: int) -> None:
    as_sql(session).execute("UPDATE subscription_state SET events = ? WHERE id = ?",
                            (events, id))


def notifications(repository: Repository, id: str, after: int, through: int | None,
                  limit: int) -> list[Notified]:
    """Events ``after < number <= through`` of subscription ``id``, oldest first."""
    upper = "" if through is None else " AND number <= ?"
    params: tuple[Any, ...] = (id, after) + (() if through is None else (through,))
    with reading(repository) as session:
        rows = as_sql(session).execute(
            "SELECT number, seq, res_type, res_id, version, interaction, at "
            f"FROM subscription_notification WHERE subscription = ? AND number > ?{upper} "
            "ORDER BY number LIMIT ?", (*params, limit)).fetchall()
    return [Notified(int(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]),
                     int(r[6])) for r in rows]


def due(repository: Repository, now: int) -> list[State]:
    """Subscriptions with delivery work whose next attempt is due (leases not
    considered): a status to settle (``requested``), or, on the rest-hook channel,
    events not delivered yet or a heartbeat due.  Idle ones cost nothing but this query."""
    with reading(repository) as session:
        rows = as_sql(session).execute(
            f"SELECT {_STATE} FROM subscription_state WHERE next_attempt <= ? AND "
            "(status = 'requested' OR (status = 'active' AND channel = 'rest-hook' AND "
            "(events > delivered OR (heartbeat > 0 AND last_sent + heartbeat <= ?)))) "
            "ORDER BY id", (now, now)).fetchall()
    return [_state(row) for row in rows]


def claim(repository: Repository, state: State, owner: str, now: int, lease_us: int) -> bool:
    """Hold the delivery lease of ``state``'s subscription (one process at a time sends
    its notifications, so they go out in order): free, ours, run out, or held by a
    process of this host that is gone."""
    held = state.owner if owner_gone(state.owner) else owner
    with writing(repository) as session:
        cursor = session.execute(
            "UPDATE subscription_state SET owner = ?, lease_until = ? WHERE id = ? AND "
            "(owner IS NULL OR owner = ? OR owner = ? OR lease_until < ?)",
            (owner, now + lease_us, state.id, owner, held, now))
        return bool(cursor.rowcount == 1)


def release(repository: Repository, owner: str) -> None:
    with writing(repository) as session:
        session.execute("UPDATE subscription_state SET owner = NULL, lease_until = NULL "
                        "WHERE owner = ?", (owner,))


def delivered(session: object, id: str, number: int, now: int) -> None:
    """Events up to ``number`` were delivered (or a heartbeat was) at ``now``."""
    as_sql(session).execute(
        "UPDATE subscription_state SET delivered = ?, last_sent = ?, failures = 0, "
        "next_attempt = 0, error = NULL WHERE id = ?", (number, now, id))


def failed(session: object, id: str, failures: int, next_attempt: int, error: str) -> None:
    as_sql(session).execute(
        "UPDATE subscription_state SET failures = ?, next_attempt = ?, error = ? WHERE id = ?",
        (failures, next_attempt, error[:1000], id))


def save_token(repository: Repository, token: str, id: str, expires: int, now: int) -> None:
    with writing(repository) as session:
        session.execute("DELETE FROM subscription_token WHERE expires < ?", (now,))
        session.execute("INSERT INTO subscription_token (token, subscription, expires) "
                        "VALUES (?, ?, ?)", (token, id, expires))


def redeem_token(repository: Repository, token: str, now: int) -> str | None:
    """The subscription a binding token is for (once: it is then spent), or None."""
    with writing(repository) as session:
        row = session.execute("SELECT subscription, expires FROM subscription_token "
                              "WHERE token = ?", (token,)).fetchone()
        session.execute("DELETE FROM subscription_token WHERE token = ?", (token,))
    if row is None or int(row[1]) < now:
        return None
    return str(row[0])


def live_states_of(repository: Repository) -> list[State]:
    with reading(repository) as session:
        return live_states(session)


def save_owner(session: object, id: str, access: str) -> None:
    """Record the creator's access (JSON) of subscription ``id``, once: a later update
    by another token does not change whose eyes the notifications are for."""
    sql = as_sql(session)
    if sql.execute("SELECT 1 FROM subscription_owner WHERE id = ?", (id,)).fetchone() is None:
        sql.execute("INSERT INTO subscription_owner (id, access) VALUES (?, ?)", (id, access))


def owners(session: object, ids: list[str]) -> dict[str, str]:
    """The recorded creators' access (JSON) of those of ``ids`` that have one."""
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = as_sql(session).execute(
        f"SELECT id, access FROM subscription_owner WHERE id IN ({marks})", ids).fetchall()
    return {str(row[0]): str(row[1]) for row in rows}
