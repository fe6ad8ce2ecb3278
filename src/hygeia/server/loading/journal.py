"""The load journal: what makes rerunning a killed ``hygeia load`` exact.

A load can be killed at any moment.  Whatever it committed stays, and a rerun
must store exactly the rest: not again what is stored (a transaction Bundle's
``POST`` entries get new server ids each time, so storing it twice duplicates
every resource), and not less.  So each transaction that stores part of a file
also records, in the same transaction, how far into the file it got
(:mod:`hygeia.store.load_journal`): the journal and the data commit together,
whichever instant the process dies, including in the middle of the commit.

A file is known by the SHA-256 of its bytes, not its name: a rerun from
another directory, or after the file was moved, resumes it; a file whose
content changed is a new file, loaded from its start.

>>> mark = Mark(file_key(path), str(path), progress=0, complete=False)  # doctest: +SKIP
>>> with recording(host, replace(mark, progress=10, complete=True)):  # doctest: +SKIP
...     host.handle(FhirRequest("POST", "", body=bundle))
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hygeia.fhir.datetime import now_us
from hygeia.store import Repository, Session, as_sql, load_journal, reading, writing

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

READ_SIZE = 1 << 20  # bytes read at a time while hashing a file


@dataclass(frozen=True, slots=True)
class Mark:
    """How far the load of one file got: ``progress`` units stored (NDJSON: the line
    number of the last line dealt with; a Bundle: entries; any other JSON file:
    resources), ``complete`` once the whole file was."""

    source: str  # the SHA-256 of the file's bytes, in hex
    path: str  # where it was read, for people reading the table
    progress: int
    complete: bool


def file_key(path: Path) -> str:
    """The SHA-256 of the file's bytes (compressed bytes for a ``.gz``: cheaper, as exact)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


def find(repository: Repository, source: str, path: str) -> Mark | None:
    """The journal's mark for ``source``, or None when no load stored any of it."""
    with reading(repository) as session:
        found = load_journal.find(session, source)
    return None if found is None else Mark(source, path, *found)


def record(session: Session, marks: Iterable[Mark]) -> None:
    """Write ``marks`` in ``session``'s transaction (they commit with what they account for)."""
    updated = now_us()
    rows = [(mark.source, mark.progress, mark.complete, mark.path, updated) for mark in marks]
    if rows:
        load_journal.record(as_sql(session), rows)


def record_alone(repository: Repository, mark: Mark) -> None:
    """Write ``mark`` in a transaction of its own: for progress that stored nothing (the
    rest of a file was invalid), so a rerun need not read it again."""
    with writing(repository) as session:
        record(session, [mark])


@contextmanager
def recording(host: Host, mark: Mark) -> Iterator[list[Mark]]:
    """Record ``mark`` in the first write transaction ``service`` opens within the block,
    on this thread.

    The transaction and batch paths (``server/rest/bundles.py``) open their own
    transaction through :meth:`Host.transaction`; its before-commit hook
    writes the mark just before that transaction commits, so it rolls back with it.
    The list yielded holds the mark once it was written (it may still roll back; it is empty if
    no write transaction was opened).  Only the first transaction records it: a
    Bundle of the loader is one transaction (one entry, for a batch).  Other
    threads are left alone: the NDJSON loader's committer thread may be storing a
    batch of an earlier file meanwhile, and must not take the Bundle's mark.
    """
    written: list[Mark] = []

    def record_once(session: Session) -> None:
        if not written:
            record(session, [mark])
            written.append(mark)

    with host.before_commit(record_once):
        yield written
