"""The loader's single writer: prepared lines into the database, a batch per transaction.

Workers prepare lines without knowing the database; this is where each line
gets its version.  One batch is one transaction, so a load killed part-way
leaves whole batches (versions, resource rows and index rows together) and
nothing of the batch in progress.  A line whose id is already stored is an
error unless the load upserts, in which case it becomes the next version.
Ids already loaded earlier in the same load are found the same way (they are
in the database, or earlier in the batch), so no set of every id loaded is
kept and memory stays flat however large the input.

SearchParameter lines go through the ordinary write path in a transaction of
their own, so they are checked and take effect exactly as when POSTed; lines
prepared before that (in flight in the workers) are re-indexed here.

Batches commit on a thread of their own, one at a time and in order, while the
loading thread collects the next one; their outcomes (counts, errors, progress)
are accounted for on the loading thread.

When the load keeps a journal (``hygeia load``), each batch's transaction also
records, for every file it stores lines of, the last line it dealt with
(:mod:`.loading_journal`): lines are stored in input order, so every line up
to that number is stored or was reported, and a rerun starts after it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from hygeia.fhir.outcome import Conflict, FhirError
from hygeia.fhir.search.index import index_resource
from hygeia.server.loading.journal import Mark, record
from hygeia.server.loading.prepare import Prepared, restamp
from hygeia.server.loading.report import ErrorSink, LoadError, LoadReport
from hygeia.server.rest import write
from hygeia.store import Head, PreparedRows, Session, StoredVersion, prepare_rows

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

ATTEMPTS = 3  # a batch that loses a race with a concurrent writer (PostgreSQL) is retried


@dataclass
class _Outcome:
    stored: Counter[str]
    errors: list[LoadError]


class BatchWriter:
    """Collects prepared lines and stores them ``batch_size`` at a time."""

    def __init__(self, host: Host, *, upsert: bool, report: LoadReport,
                 errors: ErrorSink, on_progress: Callable[[int], None] | None,
                 batch_size: int, refused_types: frozenset[str] = frozenset()) -> None:
        self._host = host
        self._refused = refused_types
        self._upsert = upsert
        self._report = report
        self._errors = errors
        self._on_progress = on_progress
        self._batch_size = batch_size
        self._batch: list[tuple[str, Prepared]] = []
        # journaled files: their marks as of the last line collected, for the next commit
        self._marks: dict[str, Mark] = {}
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="hygeia-load-commit")
        self._committing: Future[_Outcome] | None = None

    def add(self, source: str, generation: int, prepared: list[Prepared],
            mark: Mark | None = None) -> None:
        """Queue lines prepared under registry ``generation``; a full batch goes to commit.

        ``mark`` (a journaled file): how far the file is dealt with once these lines
        are stored; it commits with the batch that stores the last of them.
        """
        collected = 0  # the line number of the last of these lines put in the batch
        for item in prepared:
            if item.resource_type in self._refused:
                self._errors(LoadError(source, item.line, f"{item.resource_type} is written by "
                                       "the server alone and cannot be imported"))
                continue
            if item.tables is None:
                self._mark_partly(mark, collected)
                self.commit()  # everything before it first, as the input orders them
                self._write_search_parameter(source, item, mark)
                collected = item.line  # stored (or reported) and recorded: never again
                continue
            if generation != self._host.registry.generation:
                item = self._reindexed(item)
            self._batch.append((source, item))
            collected = item.line
            if len(self._batch) >= self._batch_size:
                self._mark_partly(mark, collected)
                self._send()
        if mark is not None:
            self._marks[mark.source] = mark

    def _mark_partly(self, mark: Mark | None, line: int) -> None:
        """A batch is about to end within the lines being added: it records up to ``line``."""
        if mark is not None and line:
            self._marks[mark.source] = Mark(mark.source, mark.path, line, False)

    def commit(self) -> None:
        """Store everything collected so far and wait until it has committed."""
        self._send()
        self._finish()

    def close(self) -> None:
        """Commit what is left and stop the committer thread."""
        try:
            self.commit()
        finally:
            self._committer.shutdown()

    def abort(self) -> None:
        """Drop what is not committed yet (a batch already committing still completes)."""
        self._batch, self._marks = [], {}
        self._committer.shutdown(cancel_futures=True)

    def _send(self) -> None:
        """Hand the batch to the committer thread, once the one before it has committed.

        While a batch commits (mostly in SQLite's or psycopg's C code, which releases
        the interpreter lock), the loading thread keeps taking the workers' answers and
        giving them new lines, so neither side waits for the other's commit or fsync.
        """
        batch, self._batch = self._batch, []
        marks, self._marks = list(self._marks.values()), {}
        self._finish()
        if batch or marks:
            self._committing = self._committer.submit(self._store, batch, marks)

    def _finish(self) -> None:
        """Wait for the batch committing (if any) and account for it on this thread, so
        the caller's callbacks always run on the thread that called the loader."""
        future, self._committing = self._committing, None
        if future is None:
            return
        outcome = future.result()
        for resource_type, count in outcome.stored.items():
            self._report.stored(resource_type, count)
        for load_error in outcome.errors:
            self._errors(load_error)
        self._progress()

    def _store(self, batch: list[tuple[str, Prepared]], marks: list[Mark]) -> _Outcome:
        """One batch in one transaction (on the committer thread); retried if it lost a
        race with a concurrent writer of the same ids."""
        for _ in range(ATTEMPTS - 1):
            try:
                return self._write(batch, marks)
            except Conflict:
                continue
        try:
            return self._write(batch, marks)
        except Conflict as error:
            return _Outcome(Counter(), [LoadError(source, item.line, str(error))
                                        for source, item in batch])

    def _write(self, batch: list[tuple[str, Prepared]], marks: list[Mark]) -> _Outcome:
        outcome = _Outcome(Counter(), [])
        with self._host.transaction() as session:
            record(session, marks)
            keys = list({(item.resource_type, item.id) for _, item in batch if item.client_id})
            heads = session.heads(keys, for_update=self._upsert) if keys else {}
            for source, item in batch:
                if self._put(session, heads, item):
                    outcome.stored[item.resource_type] += 1
                else:
                    outcome.errors.append(LoadError(
                        source, item.line, f"{item.resource_type}/{item.id} already exists; "
                                           "load with --upsert to add a new version"))
        return outcome

    def _put(self, session: Session, heads: dict[tuple[str, str], Head], item: Prepared
             ) -> bool:
        """Write one line as its resource's next version (False: it exists, no upsert)."""
        key = (item.resource_type, item.id)
        head = heads.get(key)
        if head is None:
            version, last_updated, content = 1, item.last_updated, item.content
            method = "PUT" if item.client_id else "POST"  # as an update-as-create / a create
        elif head.deleted or self._upsert:
            version = head.version + 1
            # strictly after the version it replaces, as the ordinary write path keeps them
            last_updated = max(item.last_updated, head.last_updated + 1)
            content, method = restamp(item, version, last_updated), "PUT"
        else:
            return False
        assert item.tables is not None
        session.put(StoredVersion(item.resource_type, item.id, version, last_updated, False,
                                  content, method, 0), PreparedRows(item.tables))
        heads[key] = Head(version, last_updated, False)
        return True

    def _reindexed(self, item: Prepared) -> Prepared:
        """Rows for the parameters in force now (the line was prepared before a
        SearchParameter in the same load took effect)."""
        resource = orjson.loads(item.content)
        rows = index_resource(resource, self._host.registry)
        return item._replace(tables=prepare_rows(item.resource_type, rows).tables)

    def _write_search_parameter(self, source: str, item: Prepared, mark: Mark | None
                                ) -> None:
        resource = orjson.loads(item.content)
        try:
            with self._host.transaction() as session:
                if mark is not None:  # a rerun must not write it again
                    record(session, [Mark(mark.source, mark.path, item.line, False)])
                if not self._put_search_parameter(session, item, resource):
                    self._errors(LoadError(source, item.line, f"SearchParameter/{item.id} "
                                           "already exists; load with --upsert to add a new "
                                           "version"))
                    return
        except FhirError as error:
            self._errors(LoadError(source, item.line, _describe(error)))
            return
        self._report.stored("SearchParameter")
        self._progress()

    def _put_search_parameter(self, session: Session, item: Prepared,
                              resource: dict[str, object]) -> bool:
        if not item.client_id:
            write.create(session, "SearchParameter", resource, id=item.id, validated=True)
            return True
        current = session.current("SearchParameter", item.id, for_update=True)
        if current is not None and not current.deleted and not self._upsert:
            return False
        write.update(session, "SearchParameter", item.id, resource, validated=True)
        return True

    def _progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._report.resources)


def _describe(error: FhirError) -> str:
    return "; ".join(f"{issue.expression}: {issue.diagnostics}" if issue.expression
                     else issue.diagnostics for issue in error.issues)
