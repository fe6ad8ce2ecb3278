"""The background checkpointer copies committed WAL pages into the database file."""

from __future__ import annotations

import time
from pathlib import Path

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import StoredVersion
from hygeia.store.sqlite import SqliteRepository


def test_commits_reach_the_database_file_without_the_writer_checkpointing(tmp_path: Path
                                                                          ) -> None:
    path = tmp_path / "wal.db"
    repository = SqliteRepository(path)
    try:
        empty = path.stat().st_size
        content = b'{"resourceType":"Patient","text":"' + b"x" * 2000 + b'"}'
        for batch in range(5):
            with repository.transaction() as session:
                for n in range(200):
                    session.put(StoredVersion("Patient", f"p{batch}-{n}", 1, 1, False, content,
                                              "PUT", 0), IndexRows())
        # the writer's own threshold (16,384 pages = 64 MB) is far away: only the
        # checkpointer thread can have grown the file
        deadline = time.monotonic() + 10
        while path.stat().st_size < empty + 1_000_000:
            assert time.monotonic() < deadline, "the WAL was not checkpointed"
            time.sleep(0.05)
    finally:
        repository.close()
