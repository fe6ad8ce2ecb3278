"""SQLite repository.

One writer connection guarded by the writer's turn (SQLite allows one writer at
a time; queuing writers, in the process and across processes, avoids SQLITE_BUSY
storms and the busy handler's sleeps: :mod:`.writer_turn`) and a small pool of
reader connections.  In WAL mode readers see a consistent snapshot and are
never blocked by the writer.  ``synchronous=FULL`` by default: a committed
clinical record must survive a power cut, not just a process crash; pass
``?synchronous=normal`` in the URL to trade that for speed.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from hygeia.fhir.outcome import BadRequest
from hygeia.store.base import ChangeBatch, PoolUsage, Repository
from hygeia.store.feed import read_changes
from hygeia.store.limits import Deadline, QueryTimeout, current_limit
from hygeia.store.migrations import runner
from hygeia.store.migrations.core import CORE
from hygeia.store.schema import lookup_indexes, statements
from hygeia.store.search_sql import SqlBuilder
from hygeia.store.sql import SqlSession
from hygeia.store.sqlite.checkpoint import SAFETY_NET_PAGES, Checkpointer
from hygeia.store.sqlite.statistics import restore_missing_statistics, seed_planner_statistics
from hygeia.store.sqlite.writer_turn import WriterTurn

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}
# the writer's cache keeps hot index pages across transactions: 2.8k -> 4.2k resources/s
# on Synthea ingest against 32 MB.  96, not more: with the readers' caches and the
# offload helpers the server must stay under 400 MB in all
WRITER_CACHE_MB = 96
# a bulk load into an empty database keeps no lookup indexes up to date, so a small
# cache loads as fast: 13.4k resources/s at 32 and at 96 MB (1,000 Synthea patients),
# 11.4k and 10.0k (3,000), with 120 MB less at the peak
BULK_CACHE_MB = 32


class SqliteSession(SqlSession):
    """SQLite needs no explicit locks: the single writer already serialises."""

    def lock(self, key: str) -> None:
        return None

    def _keys_condition(self, builder: SqlBuilder, keys: list[tuple[str, str]],
                        alias: str) -> str:
        """The keys as one JSON parameter: the statement text stays the same whatever
        their number, so it is prepared once, and there is no OR arm per key to plan
        (an include for a 100-entry ``$everything`` page: 4.0 -> 1.2 ms)."""
        pairs = builder.value(orjson.dumps(keys).decode())
        return (f"({alias}.res_type, {alias}.res_id) IN "
                f"(SELECT value ->> 0, value ->> 1 FROM json_each({pairs}))")

    def _allocate_keys(self, versions: int, created: int, existing: list[tuple[str, str]],
                       types: Collection[str]
                       ) -> tuple[list[int], list[int], dict[tuple[str, str], int]]:
        """Both maxima in one statement: one step into SQLite per flush, not two."""
        top_seq, top_pk = self.execute(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM resource_version), "
            "(SELECT COALESCE(MAX(pk), 0) FROM resource)").fetchone()
        return (list(range(top_seq + 1, top_seq + 1 + versions)),
                list(range(top_pk + 1, top_pk + 1 + created)), self._existing_pks(existing))

    def _allocate_seqs(self, count: int, types: Collection[str] = ()) -> list[int]:
        # safe without a sequence: only the one writer connection ever inserts
        top = self.execute("SELECT COALESCE(MAX(seq), 0) FROM resource_version").fetchone()[0]
        return list(range(top + 1, top + 1 + count))

    def _allocate_pks(self, count: int) -> list[int]:
        top = self.execute("SELECT COALESCE(MAX(pk), 0) FROM resource").fetchone()[0]
        return list(range(top + 1, top + 1 + count))


def _newest_seq(session: SqliteSession) -> int:
    return int(session.execute("SELECT COALESCE(MAX(seq), 0) FROM resource_version"
                               ).fetchone()[0])


@contextmanager
def _timed_out(deadline: Deadline, limit: float | None, writing: bool) -> Iterator[None]:
    """The block's statements together stop after ``limit`` seconds (SQLite has no
    statement timeout: its progress handler interrupts them), as a 503."""
    deadline.arm(limit)
    try:
        yield
    except sqlite3.OperationalError as error:
        if limit is not None and deadline.passed() and "interrupt" in str(error):
            raise QueryTimeout.after(limit, writing) from None
        if str(error).startswith(_TOO_COMPLEX):
            raise BadRequest(
                "The search is too complex for this server's database (SQLite: "
                f"{error}). Name the target types of a chain (subject:Patient.name), use "
                "fewer chained steps or fewer values.", code="too-costly") from None
        raise
    finally:
        deadline.arm(None)


# SQLite's fixed bounds on one statement's shape: a search within the limits of
# SearchLimits can still reach them (a three-step chain whose first reference may
# point at any of 65 types nests deeper than SQLite's parser stack of 100)
_TOO_COMPLEX = ("parser stack overflow", "Expression tree is too large",
                "too many terms in compound SELECT", "too many SQL variables",
                "at most 64 tables in a join")


class _SchemaLock:
    """Migration transactions on the writer connection (the caller holds the write lock);
    ``BEGIN IMMEDIATE`` also keeps other processes' writers out."""

    dialect = "sqlite"

    def __init__(self, writer: sqlite3.Connection) -> None:
        self._writer = writer

    @contextmanager
    def schema_transaction(self) -> Iterator[runner.Step]:
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            yield runner.Step(self.dialect, self._writer)
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        self._writer.execute("COMMIT")


class SqliteRepository(Repository):
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "full", readers: int = 4,
                 migrate: bool = False) -> None:
        self.path = str(path)
        self._migrate = migrate
        if synchronous.lower() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self._synchronous = _SYNCHRONOUS[synchronous.lower()]
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._write_turn = WriterTurn(None if self.path == ":memory:" else self.path)
        # per connection: when its current transaction's statements must stop
        self._deadlines: dict[sqlite3.Connection, Deadline] = {}
        self._writer = self._connect(cache_mb=WRITER_CACHE_MB)
        self._create_schema()
        self._checkpointer: Checkpointer | None = None
        if self.path != ":memory:":
            self._writer.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
            self._checkpointer = Checkpointer(lambda: self._connect(cache_mb=2))
        # a small fixed pool: each connection keeps its own page cache, so one per
        # request thread would multiply memory for no gain on a 2-core machine
        self._waits_lock = threading.Lock()
        self._reader_waits = 0
        self._readers: queue.Queue[sqlite3.Connection] = queue.Queue()
        self._all_readers = [self._reader_connection() for _ in range(readers)]
        for connection in self._all_readers:
            self._readers.put(connection)

    def _connect(self, cache_mb: int = 32) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=30)
        deadline = self._deadlines[connection] = Deadline()
        connection.set_progress_handler(deadline.passed, Deadline.STEPS)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
        connection.execute("PRAGMA temp_store=MEMORY")
        return connection

    def _create_schema(self) -> None:
        """Create what is missing; indexes a killed bulk load left dropped are built here,
        sorting in temporary files on disk (their size grows with the data)."""
        with self._write_turn, self._sorting_on_disk():
            schema = _SchemaLock(self._writer)
            runner.check(schema, migrate=self._migrate)  # refuse before any DDL
            self._create_missing_schema()
            self.applied_migrations = runner.apply_pending(schema)
        self._writer.execute("ANALYZE sqlite_schema")  # load the statistics into the planner

    def _create_missing_schema(self) -> None:
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements("sqlite"):
                self._writer.execute(statement)
            if self._writer.execute("SELECT COUNT(*) FROM hygeia_schema").fetchone()[0] == 0:
                self._writer.execute("INSERT INTO hygeia_schema VALUES (?)", (CORE.baseline,))
                seed_planner_statistics(self._writer)
            else:  # indexes a killed bulk load had dropped were just rebuilt
                restore_missing_statistics(self._writer)
            self._writer.execute("COMMIT")
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise

    @contextmanager
    def transaction(self, *, flush_to_disk: bool = True) -> Iterator[SqliteSession]:
        with self._write_turn:
            if not flush_to_disk:  # in WAL mode NORMAL syncs at checkpoints, not at commits
                self._writer.execute("PRAGMA synchronous=NORMAL")
            deadline = self._deadlines[self._writer]
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    with _timed_out(deadline, current_limit(writing=True), writing=True):
                        session = SqliteSession(self._writer)
                        yield session
                        session.flush()
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise
                self._writer.execute("COMMIT")
            finally:
                if not flush_to_disk:
                    self._writer.execute(f"PRAGMA synchronous={self._synchronous}")
        if self._checkpointer is not None:
            self._checkpointer.committed()
        session.run_after_commit()

    def write_turn(self) -> WriterTurn:
        """The writer's turn, across this process's threads and other processes: the
        transactions opened in the block by this thread begin at once."""
        return self._write_turn

    @contextmanager
    def bulk_load(self) -> Iterator[bool]:
        """A bulk load's scope: commits are not synced one by one, and into an empty
        database the index tables' lookup indexes are built once at the end.

        Lookup keys are hashes and uuids, so maintaining those indexes row by row
        dirties a random page per row, where ``CREATE INDEX`` sorts once (at 1,000
        Synthea patients, 1.34x the load rate).  Only an empty database qualifies:
        rebuilding costs time in proportion to all the rows, not just the new ones.
        The indexes are rebuilt however the scope ends; if the process dies inside
        it, the next open rebuilds them (the schema statements create missing
        indexes, and their planner statistics are seeded again).  Meanwhile
        searches stay correct, only slower (a reader may scan a table).

        Memory stays flat however large the load: with no lookup indexes to keep,
        the writer's hot pages are only the right edges of the tables it appends
        to, so its cache shrinks to ``BULK_CACHE_MB``; and the final ``CREATE
        INDEX`` sorts spill to temporary files on disk, not in memory, since
        their size grows with the data.

        ``synchronous=NORMAL`` in WAL mode: a commit no longer waits for its own
        fsync (a killed process still loses nothing committed; a power cut may lose
        the last batches).  The scope ends with the WAL synced, so once a load
        returns, everything it stored is as durable as with ``FULL``.
        """
        with self._write_turn:
            empty = self._writer.execute("SELECT 1 FROM resource LIMIT 1").fetchone() is None
            if empty:
                self._run_ddl([f"DROP INDEX IF EXISTS {name}" for name, _ in lookup_indexes()])
                self._writer.execute(f"PRAGMA cache_size=-{BULK_CACHE_MB * 1024}")
            self._writer.execute("PRAGMA synchronous=NORMAL")
        try:
            yield empty
        finally:
            with self._write_turn:
                self._writer.execute(f"PRAGMA synchronous={self._synchronous}")
                if empty:  # SQLite's sorts keep up to the cache's size in memory
                    try:
                        with self._sorting_on_disk():
                            self._run_ddl([statement for _, statement in lookup_indexes()],
                                          restore_missing_statistics)
                    finally:
                        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_MB * 1024}")
                # syncs the WAL (every frame the load wrote) before copying it back
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._writer.execute("ANALYZE sqlite_schema")  # reload the statistics

    @contextmanager
    def _sorting_on_disk(self) -> Iterator[None]:
        """Index builds sort in temporary files on disk, not in memory (the caller holds
        the write lock): those sorts grow with the data, searches' sorts do not."""
        self._writer.execute("PRAGMA temp_store=FILE")
        try:
            yield
        finally:
            self._writer.execute("PRAGMA temp_store=MEMORY")

    def _run_ddl(self, ddl: list[str],
                 then: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Statements in one write transaction (the caller holds the write lock)."""
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            for statement in ddl:
                self._writer.execute(statement)
            if then is not None:
                then(self._writer)
            self._writer.execute("COMMIT")
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise

    @contextmanager
    def reader(self) -> Iterator[SqliteSession]:
        connection = self._lend_reader()
        connection.execute("BEGIN")
        try:
            with _timed_out(self._deadlines[connection], current_limit(writing=False),
                            writing=False):
                yield SqliteSession(connection)
        finally:
            connection.execute("COMMIT")
            self._readers.put(connection)

    def _lend_reader(self) -> sqlite3.Connection:
        """A reader connection, counted as waited for while none is free."""
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            with self._waits_lock:
                self._reader_waits += 1
            try:
                return self._readers.get()
            finally:
                with self._waits_lock:
                    self._reader_waits -= 1

    def pool_usage(self) -> PoolUsage:
        """Readers plus the one writer (in use while a write holds it); ``waiting``
        counts requests waiting for a reader (writes queue on the write lock)."""
        in_use = len(self._all_readers) - self._readers.qsize() + self._write_turn.held()
        return PoolUsage(size=len(self._all_readers) + 1, in_use=in_use,
                         waiting=self._reader_waits)

    def feed_horizon(self) -> int:
        """The newest committed ``seq``: the one writer commits in ``seq`` order."""
        with self.reader() as session:
            return _newest_seq(session)

    def changes(self, after: int, limit: int = 500, types: Collection[str] | None = None
                ) -> ChangeBatch:
        with self.reader() as session:  # one snapshot: the horizon and the rows read
            newest = _newest_seq(session)
            return read_changes(session, after, limit, types, newest, newest=newest)

    def schema_version(self, timeout: float) -> int | None:
        with self.reader() as session:  # a local file: reading it never waits on a network
            row = session.execute("SELECT MAX(version) FROM hygeia_schema").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def recorded_versions(self, timeout: float) -> dict[str, int]:
        with self.reader() as session:
            return runner.recorded_versions(runner.Step("sqlite", session.connection))

    def _reader_connection(self) -> sqlite3.Connection:
        # small: the operating system's page cache holds the file as well, so a miss
        # here costs a copy, not a disk read
        connection = self._connect(cache_mb=8)
        connection.execute("PRAGMA query_only=ON")
        return connection

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        for connection in self._all_readers:
            connection.close()
        with self._write_turn:
            self._writer.close()
        self._write_turn.close()
