"""How long one database statement may run, set per request or job, not per connection.

A search a client can write in one short URL may run for minutes (a deep
chain over many rows); a bulk export legitimately runs queries for minutes.
So the limit travels with the work, in a context variable: the server sets
the interactive limit around each request (``FhirService.handle``) and the job
limit around each job (``JobRunner``); the repositories read it when they open
a transaction.  Without a limit set (the CLI's loads, tests of the store
alone) nothing is bounded.

A statement past its limit is cancelled by the database itself (PostgreSQL's
``statement_timeout``, so it stops even after the client and the server have
gone) or interrupted (SQLite's progress handler), and the request answers 503
with an OperationOutcome (:class:`QueryTimeout`), never a raw 500.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from hygeia.fhir.outcome import FhirError


@dataclass(frozen=True, slots=True)
class StatementLimits:
    """Seconds a statement may run in a read transaction and in a write transaction,
    and the ``hygeia serve`` flag that sets each (named when a query is stopped, so the
    operator raises the limit that stopped it: a job's reads run under
    ``--job-statement-timeout``, a request's under ``--statement-timeout``).

    0 or None: no limit.
    """

    read: float | None = None
    write: float | None = None
    read_flag: str = "--statement-timeout"
    write_flag: str = "--job-statement-timeout"

    @classmethod
    def for_job(cls, seconds: float | None) -> StatementLimits:
        """A job's reads and writes alike run under ``--job-statement-timeout``."""
        return cls(seconds, seconds, read_flag="--job-statement-timeout")

    def seconds(self, writing: bool) -> float | None:
        limit = self.write if writing else self.read
        return limit if limit else None

    def flag(self, writing: bool) -> str:
        return self.write_flag if writing else self.read_flag


_CURRENT: ContextVar[StatementLimits | None] = ContextVar("hygeia_statement_limits",
                                                          default=None)


@contextmanager
def statement_limits(limits: StatementLimits) -> Iterator[None]:
    """Run the block's database work under ``limits``."""
    token = _CURRENT.set(limits)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_limit(writing: bool) -> float | None:
    """Seconds the statements of a transaction opened now may each run (None: no limit)."""
    limits = _CURRENT.get()
    return None if limits is None else limits.seconds(writing)


class QueryTimeout(FhirError):
    """503: a query ran longer than the server allows and was stopped."""

    status = 503
    default_code = "timeout"

    @classmethod
    def after(cls, seconds: float | None, writing: bool) -> QueryTimeout:
        """The timeout of a read or write transaction run under the current limits."""
        limit = f"{seconds:g} s" if seconds else "its limit"
        limits = _CURRENT.get()
        flag = (limits or StatementLimits()).flag(writing)
        return cls(f"The query took longer than {limit} and was stopped. Narrow the search "
                   "(fewer values, a shorter chain, a more specific parameter) or ask the "
                   f"server's operator to raise {flag}.")


class Deadline:
    """When the statements running on one SQLite connection must stop (monotonic seconds).

    SQLite has no statement timeout; its progress handler calls :meth:`passed`
    every few thousand virtual machine steps, and a true answer interrupts the
    statement (``sqlite3.OperationalError: interrupted``).
    """

    __slots__ = ("at", "seconds")

    # VM steps between checks: a check costs about a microsecond, the steps between
    # them a fraction of a millisecond
    STEPS = 10_000

    def __init__(self) -> None:
        self.at = float("inf")
        self.seconds: float | None = None

    def arm(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at = float("inf") if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() > self.at
