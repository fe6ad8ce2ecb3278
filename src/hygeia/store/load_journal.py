"""The ``load_journal`` table: how far ``hygeia load`` got with each input file.

One row per file *content* (``source`` is the SHA-256 of the file's bytes, so
a file renamed or moved is still known, and a file changed is a new source).
``progress`` counts the units of the file already stored (NDJSON: the last
line number; a Bundle or JSON file: its entries or resources) and
``complete`` says the whole file was.  Rows are written in the same
transaction as the resources they account for, so after a crash at any point
the journal and the data agree: a rerun resumes exactly where the committed
data ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from hygeia.store.sql import SqlSession

JournalRow = tuple[str, int, bool, str, int]  # (source, progress, complete, path, updated)


def record(session: SqlSession, rows: Sequence[JournalRow]) -> None:
    """Set the rows of these sources (insert or replace), in the caller's transaction."""
    session.execute_many(
        "INSERT INTO load_journal (source, progress, complete, path, updated) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
        "progress = excluded.progress, complete = excluded.complete, path = excluded.path, "
        "updated = excluded.updated", rows)


def find(session: SqlSession, source: str) -> tuple[int, bool] | None:
    """(progress, complete) of ``source``, or None if no load has stored any of it."""
    row = session.execute("SELECT progress, complete FROM load_journal WHERE source = ?",
                          (source,)).fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))
