"""Short transactions on the plain tables beside the resources (jobs, auth).

Those tables are not FHIR resources, so they have no Session method of their
own; their stores write SQL directly on the session's connection, inside the
repository's own transactions (so SQLite's single writer serialises them too).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hygeia.store.base import Repository
from hygeia.store.sql import SqlSession


@contextmanager
def writing(repository: Repository, *, flush_to_disk: bool = True) -> Iterator[SqlSession]:
    """A write transaction as the SQL session both backends use."""
    with repository.transaction(flush_to_disk=flush_to_disk) as session:
        yield as_sql(session)


@contextmanager
def reading(repository: Repository) -> Iterator[SqlSession]:
    """A read-only snapshot as the SQL session both backends use."""
    with repository.reader() as session:
        yield as_sql(session)


def as_sql(session: object) -> SqlSession:
    assert isinstance(session, SqlSession), "plain tables need an SQL backend"
    return session
