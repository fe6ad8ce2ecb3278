"""Bulk loading of NDJSON: the engine behind ``hygeia load`` (and ``$import``).

Three stages, with bounded hand-offs between them so memory stays flat
however large the input:

1. the caller's thread reads lines and cuts them into chunks;
2. worker processes (:mod:`.loading_pool`) parse, validate, stamp and index
   each line (:mod:`.loading_prepare`), the CPU-heavy part, in parallel;
3. the caller's thread takes the answers in input order and stores them in
   large batches, one transaction each (:mod:`.loading_writer`), with index
   rows already in the tables' form, so the single writer does little more
   than the inserts.

Every stored resource is validated and indexed exactly as the ordinary write
path does it (the same functions run in the workers).  Bad lines become
:class:`LoadError` entries with their line numbers and never stop the load.

A source given a journal :class:`Mark` (``hygeia load`` does) has its progress
recorded in the transactions that store it, and starts after the lines its
mark says were dealt with (:mod:`.loading_journal`).

>>> with Loader(host, workers=2, upsert=False) as loader:  # doctest: +SKIP
...     loader.load_lines("patients.ndjson", open("patients.ndjson", "rb"))
>>> loader.report.summary()  # doctest: +SKIP
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

from hygeia.fhir.search.parameters import SearchParameter
from hygeia.server.loading.journal import Mark
from hygeia.server.loading.pool import Answer, Lines, WorkerPool
from hygeia.server.loading.prepare import prepare_lines
from hygeia.server.loading.report import ErrorSink, LoadError, LoadReport
from hygeia.server.loading.writer import BatchWriter
from hygeia.server.offload.jobs import custom_parameters

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

__all__ = ["LoadError", "LoadReport", "Loader"]

CHUNK_LINES = 500  # lines per job for a worker
CHUNK_BYTES = 1 << 20  # ...or fewer, when the lines are long
BATCH_SIZE = 4000  # resources per transaction
DEPTH = 4  # jobs in flight per worker: enough to keep preparing while a batch commits


class _Job(NamedTuple):
    """A chunk in flight: its source, and the source's journal mark once it is stored."""

    source: str
    mark: Mark | None


class Loader:
    """Loads NDJSON sources into ``service``'s repository; :meth:`close` gives the report.

    ``workers``: processes that parse, validate and index (0: all in this
    process).  ``upsert``: an id already stored becomes its next version
    instead of an error.  ``on_error`` is called with every error as it is
    found; ``on_progress`` after every batch with the number of resources
    stored so far.  ``refused_types``: lines of these types are errors (``$import``
    refuses the audit trail, which the server alone writes).  ``bulk``: load inside
    ``Repository.bulk_load`` (on SQLite: commits not synced one by one, and into an
    empty database the index tables' lookup indexes built once at the end); for a
    command that loads a lot, not for a server where others search.
    """

    def __init__(self, host: Host, *, workers: int, upsert: bool,
                 on_error: Callable[[LoadError], None] | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 batch_size: int = BATCH_SIZE, chunk_lines: int = CHUNK_LINES,
                 refused_types: frozenset[str] = frozenset(),
                 bulk: bool = False) -> None:
        self._started = time.perf_counter()
        self._host = host
        self._scope = ExitStack()  # left last: after the last commit
        self.report = LoadReport()
        self._errors = ErrorSink(self.report, on_error)
        self._writer = BatchWriter(host, upsert=upsert, report=self.report,
                                   errors=self._errors, on_progress=on_progress,
                                   batch_size=batch_size, refused_types=refused_types)
        self._chunk_lines = chunk_lines
        self._pool = WorkerPool(workers, DEPTH) if workers > 0 else None
        self._jobs: deque[_Job] = deque()  # the jobs in flight, oldest first
        self._parameters: tuple[int, tuple[SearchParameter, ...]] | None = None
        self._closed = False
        if bulk:
            self._scope.enter_context(host.repository.bulk_load())

    def load_lines(self, source: str, lines: Iterable[bytes], mark: Mark | None = None
                   ) -> None:
        """Load one NDJSON source given as raw lines (1-based numbering; blank lines skipped).

        ``mark``: the source's journal mark; lines up to ``mark.progress`` were dealt
        with by an earlier load and are skipped, and the transactions storing the
        others record how far they got.  Returns once every line has been handed
        on; the last ones may still be in flight until the next source or :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("this Loader is closed")
        chunk: Lines = []
        size = 0
        last = after = mark.progress if mark is not None else 0
        for number, line in _numbered(source, lines, self._errors):
            if number <= after:
                continue
            chunk.append((number, line))
            size += len(line)
            last = number
            if len(chunk) >= self._chunk_lines or size >= CHUNK_BYTES:
                self._submit(source, chunk, _progressed(mark, number, complete=False))
                chunk, size = [], 0
        if mark is not None:  # even empty, the last job says the source is done, in order
            self._submit(source, chunk, _progressed(mark, last, complete=True))
        elif chunk:
            self._submit(source, chunk)

    def close(self) -> LoadReport:
        """Store everything still in flight, stop the workers and return the report."""
        if not self._closed:
            self._closed = True
            try:
                while self._jobs:
                    self._take()
                self._writer.close()
            except BaseException:
                self._writer.abort()  # a database error: stop the committer thread too
                raise
            finally:
                try:
                    if self._pool is not None:
                        self._pool.close()
                finally:
                    self._scope.close()
            self.report.seconds = time.perf_counter() - self._started
        return self.report

    def abort(self) -> None:
        """Stop at once: what is committed stays, what is in flight is dropped."""
        if not self._closed:
            self._closed = True
            try:
                self._writer.abort()
                if self._pool is not None:
                    self._pool.close(kill=True)
            finally:
                self._scope.close()  # what committed is kept, and gets its indexes
            self.report.seconds = time.perf_counter() - self._started

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _submit(self, source: str, chunk: Lines, mark: Mark | None = None) -> None:
        job = _Job(source, mark)
        if self._pool is None:
            self._store(job, self._inline(chunk))
            return
        while self._pool.full:
            self._take()
        self._pool.submit(chunk, self._host.registry.generation, self._custom_parameters)
        self._jobs.append(job)

    def _take(self) -> None:
        """Store the oldest job's answer (waiting for it)."""
        assert self._pool is not None
        job = self._jobs.popleft()
        self._store(job, self._pool.result(self._inline))

    def _store(self, job: _Job, answer: Answer) -> None:
        generation, prepared, errors = answer
        for error in errors:
            self._errors(LoadError(job.source, error.line, error.message))
        self._writer.add(job.source, generation, prepared, job.mark)

    def _inline(self, lines: Lines) -> Answer:
        registry = self._host.registry
        return (registry.generation, *prepare_lines(lines, registry))

    def _custom_parameters(self) -> tuple[SearchParameter, ...]:
        """The custom search parameters for the workers (computed once per generation)."""
        registry = self._host.registry
        if self._parameters is None or self._parameters[0] != registry.generation:
            self._parameters = (registry.generation, custom_parameters(registry))
        return self._parameters[1]


def _progressed(mark: Mark | None, line: int, *, complete: bool) -> Mark | None:
    """``mark`` once every line up to ``line`` is dealt with (None: no journal)."""
    return None if mark is None else Mark(mark.source, mark.path, line, complete)


def _numbered(source: str, lines: Iterable[bytes], errors: ErrorSink
              ) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every non-blank line; a source that breaks off (a truncated
    gzip file, a dropped connection) is one error for the source, and what was read counts."""
    iterator = iter(lines)
    number = 0
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except (OSError, EOFError, ValueError, zlib.error) as error:
            errors(LoadError(source, 0, f"could not be read to the end after line {number}: "
                                        f"{error}"))
            return
        number += 1
        if line.strip():
            yield number, line
