"""The ``audit_outbox`` table: AuditEvents committed, waiting to become resources.

A request's AuditEvent must be committed before the request is answered, but
storing it as a searchable resource (a version plus some 25 index rows) costs
as much as the read it records.  So the request waits only for its event's
JSON to be inserted here, and a background mover turns rows into AuditEvent
resources in large batches, deleting them in the same transaction: each row
becomes exactly one resource, whatever crashes in between.
"""

from __future__ import annotations

from collections.abc import Sequence

from hygeia.store.sql import SqlSession


def append(session: SqlSession, contents: Sequence[bytes]) -> None:
    """Add events (JSON bytes) to the outbox, in the caller's transaction."""
    session.execute_many("INSERT INTO audit_outbox (content) VALUES (?)",
                         [(content,) for content in contents])


def take(session: SqlSession, limit: int, dialect: str) -> list[bytes]:
    """Remove and return up to ``limit`` of the oldest events, in the caller's transaction.

    On PostgreSQL rows another process is taking are skipped, so several
    servers drain one outbox without waiting on each other.
    """
    skip = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    rows = session.execute(
        "DELETE FROM audit_outbox WHERE seq IN (SELECT seq FROM audit_outbox ORDER BY seq "
        f"LIMIT ?{skip}) RETURNING seq, content", (limit,)).fetchall()
    return [bytes(content) for _, content in sorted(rows)]


def waiting(session: SqlSession) -> bool:
    """Whether any event waits (one index probe, whatever the backlog)."""
    return bool(session.execute("SELECT 1 FROM audit_outbox LIMIT 1").fetchall())
