"""The durable job table: background work that survives a restart.

A job is a row.  A worker *claims* it by writing its own name and a lease
deadline; while it works it *renews* the lease and saves a checkpoint
(``progress``) from which any worker can resume.  When a worker dies, its
lease runs out (or, on the same host, its process is found gone) and the
next claim picks the job up again from the last checkpoint.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``, so several server
processes (or machines) share the queue without waiting on each other;
SQLite claims inside its single writer's ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.store.base import Repository
from hygeia.store.plain_sql import reading, writing
from hygeia.store.sql import SqlSession

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "queued", "running", "completed", "failed", "cancelled")
FINISHED = (COMPLETED, FAILED, CANCELLED)

_COLUMNS = ("id, kind, state, request, progress, result, error, attempts, owner, lease_until, "
            "created, updated, expires")


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the job table; ``request``, ``progress`` and ``result`` are JSON objects."""

    id: str
    kind: str
    state: str
    request: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    owner: str | None
    lease_until: int | None
    created: int
    updated: int
    expires: int | None


def worker_name() -> str:
    """``host:pid:random``: unique per process, and says where to check it is alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_gone(owner: str | None) -> bool:
    """True when ``owner`` ran on this host and its process no longer exists.

    Lets a restarted server resume its jobs at once instead of waiting for the
    lease to run out; owners on other hosts are only ever judged by their lease.
    """
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class JobStore:
    """Job table operations, each its own short transaction."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    def submit(self, kind: str, request: dict[str, Any], now: int) -> Job:
        job = Job(id=uuid.uuid4().hex, kind=kind, state=QUEUED, request=request,
                  progress=None, result=None, error=None, attempts=0, owner=None,
                  lease_until=None, created=now, updated=now, expires=None)
        with writing(self.repository) as session:
            session.execute(
                f"INSERT INTO job ({_COLUMNS}) VALUES (?, ?, ?, ?, NULL, NULL, NULL, 0, NULL, "
                "NULL, ?, ?, NULL)", (job.id, kind, QUEUED, _dump(request), now, now))
        return job

    def unfinished_by_kind(self) -> dict[tuple[str, str], int]:
        """How many jobs wait or run, by (kind, state): the queue depth that /metrics shows."""
        with reading(self.repository) as session:
            rows = session.execute("SELECT kind, state, COUNT(*) FROM job WHERE state IN "
                                   "(?, ?) GROUP BY kind, state", (QUEUED, RUNNING)).fetchall()
        return {(str(kind), str(state)): int(count) for kind, state, count in rows}

    def get(self, job_id: str) -> Job | None:
        with reading(self.repository) as session:
            rows = session.execute(f"SELECT {_COLUMNS} FROM job WHERE id = ?",
                                         (job_id,)).fetchall()
        return _job(rows[0]) if rows else None

    def claim(self, owner: str, kinds: Iterable[str], now: int, lease_us: int) -> Job | None:
        """Take the oldest job that is waiting, or whose worker stopped renewing its lease.

        The candidates are read first in a read-only snapshot, and only when one of them
        is free is the write transaction opened (which reads them again, locked): an idle
        runner polls twice a second in every serving process, and a write transaction per
        poll took SQLite's writer's turn from the listeners' group commits (with
        ``--workers 2`` the job runners spent half their time waiting for it)."""
        names = list(kinds)
        if not names:
            return None
        with reading(self.repository) as session:
            if _free_job(_candidates(session, names, ""), now) is None:
                return None
        skip = " FOR UPDATE SKIP LOCKED" if self.repository.dialect == "postgresql" else ""
        with writing(self.repository) as session:
            job_id = _free_job(_candidates(session, names, skip), now)
            if job_id is None:
                return None
            session.execute(
                "UPDATE job SET state = ?, owner = ?, lease_until = ?, "
                "attempts = attempts + 1, updated = ? WHERE id = ?",
                (RUNNING, owner, now + lease_us, now, job_id))
        return self.get(job_id)

    def renew(self, job_id: str, owner: str, now: int, lease_us: int,
              progress: dict[str, Any] | None) -> bool:
        """Extend the lease and save a checkpoint; False when the job is no longer ours
        (cancelled, or taken over after our lease ran out): the worker must stop."""
        with writing(self.repository) as session:
            cursor = session.execute(
                "UPDATE job SET lease_until = ?, updated = ?, progress = COALESCE(?, progress) "
                "WHERE id = ? AND owner = ? AND state = ?",
                (now + lease_us, now, None if progress is None else _dump(progress), job_id,
                 owner, RUNNING))
            return bool(cursor.rowcount)

    def complete(self, job_id: str, owner: str, now: int, result: dict[str, Any],
                 expires: int) -> bool:
        return self._finish(job_id, owner, now, COMPLETED, result=result, expires=expires)

    def fail(self, job_id: str, owner: str, now: int, error: str, expires: int) -> bool:
        return self._finish(job_id, owner, now, FAILED, error=error, expires=expires)

    def retry_later(self, job_id: str, owner: str, now: int, at: int, error: str) -> bool:
        """Give the job back, to be claimed again from its checkpoint after ``at``."""
        with writing(self.repository) as session:
            cursor = session.execute(
                "UPDATE job SET state = ?, owner = NULL, lease_until = ?, error = ?, updated = ? "
                "WHERE id = ? AND owner = ? AND state = ?",
                (QUEUED, at, error, now, job_id, owner, RUNNING))
            return bool(cursor.rowcount)

    def cancel(self, job_id: str, now: int) -> bool:
        """Mark a job cancelled (its worker notices at its next renewal); False if unknown."""
        with writing(self.repository) as session:
            cursor = session.execute(
                "UPDATE job SET state = ?, owner = NULL, lease_until = NULL, updated = ?, "
                "expires = ? WHERE id = ?", (CANCELLED, now, now, job_id))
            return bool(cursor.rowcount)

    def delete(self, job_id: str) -> None:
        with writing(self.repository) as session:
            session.execute("DELETE FROM job WHERE id = ?", (job_id,))

    def expired(self, now: int) -> list[Job]:
        """Finished jobs whose outputs may now be removed."""
        marks = ", ".join("?" for _ in FINISHED)
        with reading(self.repository) as session:
            rows = session.execute(
                f"SELECT {_COLUMNS} FROM job WHERE state IN ({marks}) AND expires <= ?",
                (*FINISHED, now)).fetchall()
        return [_job(row) for row in rows]

    def _finish(self, job_id: str, owner: str, now: int, state: str, *,
                result: dict[str, Any] | None = None, error: str | None = None,
                expires: int) -> bool:
        with writing(self.repository) as session:
            cursor = session.execute(
                "UPDATE job SET state = ?, result = ?, error = ?, owner = NULL, "
                "lease_until = NULL, updated = ?, expires = ? WHERE id = ? AND owner = ? "
                "AND state = ?",
                (state, None if result is None else _dump(result), error, now, expires,
                 job_id, owner, RUNNING))
            return bool(cursor.rowcount)


def _dump(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _load(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    loaded: dict[str, Any] = orjson.loads(value)
    return loaded


def _job(row: tuple[Any, ...]) -> Job:
    return Job(id=row[0], kind=row[1], state=row[2], request=_load(row[3]) or {},
               progress=_load(row[4]), result=_load(row[5]), error=row[6],
               attempts=int(row[7]), owner=row[8],
               lease_until=None if row[9] is None else int(row[9]), created=int(row[10]),
               updated=int(row[11]), expires=None if row[12] is None else int(row[12]))


def _candidates(session: SqlSession, kinds: list[str], suffix: str) -> list[Any]:
    """The oldest 20 queued or running jobs of ``kinds`` (their id, state, owner, lease)."""
    marks = ", ".join("?" for _ in kinds)
    return list(session.execute(
        f"SELECT id, state, owner, lease_until FROM job WHERE kind IN ({marks}) AND "
        "state IN (?, ?) ORDER BY created LIMIT 20" + suffix,
        (*kinds, QUEUED, RUNNING)).fetchall())


def _free_job(candidates: list[Any], now: int) -> str | None:
    """The first of ``candidates`` a worker may take at ``now``: queued and not waiting
    out a retry delay, or running under a lease that ran out or a worker found gone."""
    for job_id, state, holder, lease_until in candidates:
        free = lease_until is None or int(lease_until) <= now
        if state == RUNNING and not free and not owner_gone(holder):
            continue
        if state == QUEUED and not free:  # waiting out a retry delay
            continue
        return str(job_id)
    return None
