"""PostgreSQL repository on a psycopg 3 connection pool.

Nothing here assumes a single process: conditional creates serialise on a
transaction-scoped advisory lock, and updates lock the current row, so any
number of API workers can share one database.
"""

from __future__ import annotations

import math
import re
import struct
import threading
import uuid
from collections.abc import Collection, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from typing import Any

import orjson
import psycopg
from psycopg import pq
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from hygeia.fhir.outcome import Conflict
from hygeia.store.base import ChangeBatch, PoolUsage, Repository, StoredVersion, rows_to_versions
from hygeia.store.export_sql import ExportRow, ExportSlice, export_query
from hygeia.store.feed import batch_of
from hygeia.store.limits import QueryTimeout, current_limit
from hygeia.store.migrations import runner
from hygeia.store.migrations.core import CORE
from hygeia.store.postgres.feed import (
    CHANNEL,
    announce_writer,
    listen,
    look_at_feed,
    mark_seq,
    safe_horizon,
    signal_payload,
)
from hygeia.store.schema import INDEX_TABLES, index_column_types, statements
from hygeia.store.search_sql import SqlBuilder
from hygeia.store.sql import RESOURCE_INSERT_COLUMNS, VERSION_COLUMNS, SqlSession

_VERSION_SEQUENCE = "resource_version_seq_seq"  # BIGSERIAL's sequence of resource_version.seq
# new seqs and resource keys in one statement (each array in the order nextval gave them)
_NEW_KEYS = ("SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('resource_version', 'seq')) "
             "FROM generate_series(1, ?) ORDER BY 1), ARRAY(SELECT nextval(pg_get_serial_sequence("
             "'resource', 'pk')) FROM generate_series(1, ?) ORDER BY 1)")
PIPELINED_VERSIONS = 32  # flushes up to this many versions are pipelined INSERTs (flush)
_SCHEMA_LOCK = 7_343_201  # advisory lock id held while creating the schema

_DDL_OBJECT = re.compile(r"\s*(CREATE (?:TABLE|INDEX) IF NOT EXISTS|DROP INDEX IF EXISTS) (\w+)")


def _schema_complete(connection: psycopg.Connection[Any]) -> bool:
    """Whether every schema statement has had its effect: each object a CREATE names
    exists, none a DROP names does, and the baseline is recorded. Reads the catalog
    only (no table lock). A statement of another shape counts as not done."""
    wanted: dict[str, bool] = {}
    for statement in statements("postgresql"):
        match = _DDL_OBJECT.match(statement)
        if match is None:
            return False
        wanted[match.group(2)] = match.group(1).startswith("CREATE")
    rows = connection.execute(
        "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL",
        (sorted(wanted),)).fetchall()
    present = {name for (name,) in rows}
    if any((name in present) != exists for name, exists in wanted.items()):
        return False
    row = connection.execute("SELECT EXISTS (SELECT 1 FROM hygeia_schema)").fetchone()
    return row is not None and bool(row[0])


# tables copied in binary format, with their column types in VERSION_INSERT_COLUMNS order
BINARY_COPY_TYPES = {"resource_version": ("bigint", "text", "text", "integer", "bigint",
                                          "boolean", "text", "bytea")}

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = struct.Struct(">11sii")  # signature, flags, length of the header extension
_EXPORT_ROW = struct.Struct(">hiqi")  # field count, key length, key, content length
_COPY_TRAILER = b"\xff\xff"  # a field count of -1


def binary_export_rows(chunks: Iterable[Any]) -> Iterator[ExportRow]:
    """The (bigint, bytea) rows of a binary COPY stream; contents are views into the chunks.

    PostgreSQL sends one row per message (the file header rides on the first, the
    trailer comes last); whole rows are all this relies on, however many per chunk.
    """
    first = True
    for chunk in chunks:
        view = memoryview(chunk)
        offset, end = 0, len(view)
        if first:
            signature, _, extension = _COPY_HEADER.unpack_from(view)
            if signature != _COPY_SIGNATURE:
                raise ValueError("not a binary COPY stream")
            offset, first = _COPY_HEADER.size + extension, False
        while offset < end:
            if end - offset < _EXPORT_ROW.size:  # only the trailer is shorter than a row
                if view[offset:end] != _COPY_TRAILER:
                    raise ValueError("a binary COPY row was cut short")
                break
            fields, key_size, key, size = _EXPORT_ROW.unpack_from(view, offset)
            if fields != 2 or key_size != 8:
                raise ValueError(f"expected (bigint, bytea) rows, got {fields} fields")
            offset += _EXPORT_ROW.size
            if size < 0:
                yield key, None
            elif offset + size > end:
                raise ValueError("a binary COPY row was cut short")
            else:
                yield key, view[offset:offset + size]
                offset += size


class PostgresSession(SqlSession):
    placeholder = "%s"
    date_sort_walk = True  # its planner drives from the bound when that is narrower
    _export_ready = False  # export settings made for this transaction (_for_export)
    _announced = False  # this transaction holds the change feed's gate and mark (feed.py)
    _pipelining = False  # inside a pipelined flush: INSERT, not COPY (flush)
    # inside a pipelined flush: the rows to insert, (table, columns, rows), sent at its end
    # as one statement (_insert_combined)
    _combined: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]] | None = None

    def __init__(self, connection: Any, source: str = "") -> None:
        super().__init__(connection)
        self._held: set[str] = set()  # the keys this transaction has locked (lock)
        self._unsent: list[str] = []  # locked keys not yet sent (_send_locks)
        # BEGIN and the transaction's settings, until its first statement (begin_with_next)
        self._prelude: list[str] = []
        self._begun = False  # BEGIN has been sent: COMMIT or ROLLBACK ends the transaction
        self._commit_sent = False  # the flush sent COMMIT in its pipeline (commit)
        self.source = source  # the repository's name in commit signals ("": none sent)
        self._signalled: set[str] = set()  # types this transaction has signalled

    def _versions_by_seq(self, seqs: list[int]) -> list[StoredVersion]:
        """The versions of ``seqs`` in their order, the seqs as one array parameter: an
        ``IN`` list of a placeholder each is a query psycopg parses afresh on every call
        (it caches only short ones), and a search page of 1,000 or a feed consumer's
        batch of 2,000 made that a tenth of the NEWS2 engine's CPU (py-spy, issue 17)."""
        if not seqs:
            return []
        rows = self.execute(f"SELECT {VERSION_COLUMNS} FROM resource_version v "
                            "WHERE v.seq = ANY(%s::bigint[])", [seqs]).fetchall()
        by_seq = {version.seq: version for version in rows_to_versions(None, iter(rows))}
        return [by_seq[seq] for seq in seqs if seq in by_seq]

    def _for_update(self, wanted: bool) -> str:
        return " FOR UPDATE OF r" if wanted else ""

    def _for_share(self, wanted: bool) -> str:
        return " FOR SHARE OF r" if wanted else ""

    def lock(self, key: str) -> None:
        """A lock held already in this transaction costs no round trip (the lock lasts
        until the transaction ends)."""
        if key in self._held:
            return
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))
        self._held.add(key)

    def lock_all(self, keys: Iterable[str]) -> None:
        """One statement for all: ``unnest`` yields the sorted keys in order (an MQTT
        batch of 200 readings took 200 round trips, half of storing it)."""
        self.lock_with_next(keys)
        self._send_locks()

    def lock_with_next(self, keys: Iterable[str]) -> None:
        """The locks go with the session's next statement (:meth:`_send_locks`)."""
        ordered = sorted(set(keys) - self._held)
        self._unsent.extend(ordered)
        self._held.update(ordered)

    def begin_with_next(self, settings: Sequence[str]) -> None:
        """Open the transaction (BEGIN, then ``settings``: ``SET LOCAL`` statements) with
        the session's first statement, in its round trip (:meth:`_send_locks`).

        BEGIN was a round trip of its own (with its settings) before the transaction's
        first statement, and COMMIT another after its last (:meth:`commit`): two of the
        ten or so of an MLLP group commit's batch, each a wait for the server and for
        this process's GIL after it (issue 16). A transaction that sends nothing sends
        no BEGIN either."""
        self._prelude = ["BEGIN", *settings]

    def _send_prelude(self) -> None:
        """BEGIN and the settings :meth:`begin_with_next` deferred, if not sent yet."""
        if self._prelude:
            statements, self._prelude = self._prelude, []
            self._begun = True  # (before: a failure sending them still needs ROLLBACK)
            for statement in statements:
                SqlSession.execute(self, statement)

    def commit(self) -> None:
        """Flush, then COMMIT: in the flush's pipeline when it has one (a round trip
        less), else after it; nothing at all when the transaction sent nothing.

        The COMMIT's result is read before this returns, so a caller that
        acknowledges after it still does so only once the commit is durable; a flush
        that fails aborts the pipeline, COMMIT included, and :meth:`rollback` ends
        the transaction."""
        self._commit_sent = False
        self.flush(commit=True)
        if self._begun and not self._commit_sent:  # the flush had no pipeline for it
            SqlSession.execute(self, "COMMIT")
        self._begun = False  # (still True if COMMIT failed: rollback then ends it)

    def rollback(self) -> None:
        """End the transaction without its work, if BEGIN was sent."""
        self._prelude, self._unsent = [], []
        if self._begun:
            self._begun = False
            SqlSession.execute(self, "ROLLBACK")

    def _send_locks(self) -> None:
        """Send what goes ahead of the next statement: BEGIN and the settings
        (:meth:`begin_with_next`), then the locks :meth:`lock_with_next` deferred, in
        the order asked.

        A lock is sent ahead of the statement that follows it, in one pipeline
        (:meth:`execute`): PostgreSQL runs a connection's statements in order, so the
        lock is held before anything after it reads or writes, as when it was a round
        trip of its own. An MLLP group commit sent its batch's locks, then the look-ups
        they guard, and each message's device tree lock, then that tree's heads: a
        round trip each, a fifth of the committer's (issue 16). A lock nothing follows
        is sent by :meth:`flush`, which every write transaction ends with."""
        if self._prelude and self._unsent and \
                self.connection.pgconn.pipeline_status == pq.PipelineStatus.OFF:
            with self.connection.pipeline():  # BEGIN and the locks: one round trip
                self._send_locks()
            return
        self._send_prelude()
        keys, self._unsent = self._unsent, []
        if len(keys) == 1:
            SqlSession.execute(self, "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
                               (keys[0],))
        elif keys:
            SqlSession.execute(self, "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                               "FROM unnest(?::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
                               (keys,))

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        """As :meth:`SqlSession.execute`, after the locks not yet sent, in the same round
        trip (:meth:`_send_locks`)."""
        if not self._unsent and not self._prelude:
            return super().execute(sql, params)
        in_pipeline = self.connection.pgconn.pipeline_status != pq.PipelineStatus.OFF
        with nullcontext() if in_pipeline else self.connection.pipeline():
            self._send_locks()
            return super().execute(sql, params)

    def execute_many(self, sql: str, rows: Sequence[tuple | list]) -> Any:
        self._send_locks()
        return super().execute_many(sql, rows)

    def _insert_rows(self, cursor: Any, table: str, columns: tuple[str, ...],
                     rows: list[tuple[Any, ...]]) -> None:
        """COPY instead of INSERT: 1.6x PostgreSQL ingest on Synthea for the index rows (1,736
        -> 2,748 resources/s over HTTP, benchmarks/ingest.py).

        Versions go in binary format: text COPY hex-encodes the JSON content (bytea) and
        was slower than INSERT for it (91 vs 73-81 ms per 380 Synthea-sized versions),
        binary COPY faster (66 ms).

        A small flush (see :meth:`flush`) inserts instead: each COPY waits for the
        server twice, and a pipeline sends every INSERT in one round trip.
        """
        if self._combined is not None:
            self._combined.append((table, columns, rows))
            return
        self._send_locks()  # (sent already by the flush's first statement: a safeguard)
        if self._pipelining:
            super()._insert_rows(cursor, table, columns, rows)
            return
        binary = BINARY_COPY_TYPES.get(table)
        options = " (FORMAT BINARY)" if binary else ""
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN{options}") as copy:
            if binary:
                copy.set_types(list(binary))
            for row in rows:
                copy.write_row(row)

    def _keys_condition(self, builder: SqlBuilder, keys: list[tuple[str, str]],
                        alias: str) -> str:
        """Two array parameters instead of an OR per key: planning 100 OR arms took
        longer than running the include (7 ms for a ``$everything`` page)."""
        types = builder.value([kind for kind, _ in keys])
        ids = builder.value([id for _, id in keys])
        return (f"({alias}.res_type, {alias}.res_id) IN (SELECT t COLLATE \"C\", i COLLATE \"C\" "
                f"FROM unnest({types}::text[], {ids}::text[]) AS owner(t, i))")

    def export_rows(self, part: ExportSlice, after: int, limit: int
                    ) -> Generator[ExportRow, None, None]:
        """``COPY (query) TO STDOUT`` in binary format, parsed as it arrives.

        Against keyset SELECTs of 5,000 rows: the server produces the next rows while
        this process writes the last ones (a SELECT's result arrives whole before the
        first row can be written), and a row is one memoryview into the message, no
        result set built and copied per value.  Binary format hands the stored bytes
        over verbatim (text format escapes backslashes, and JSON has many).  COPY takes
        no bound parameters, so psycopg merges them into the statement as literals.
        """
        self.flush()
        self._for_export()
        sql, params = export_query(self, part, after, limit)
        cursor = self.connection.cursor()
        with cursor.copy(f"COPY ({self._sql(sql)}) TO STDOUT (FORMAT BINARY)", params) as copy:
            yield from binary_export_rows(copy)

    def export_key_bound(self, kind: str, after: str) -> str:
        """A row comparison, which only the (res_type, pk) index can serve: with
        ``pk > n`` and the literal values of a COPY, the planner walked the primary key
        instead and filtered every other type's rows out."""
        return f"(r.res_type, r.pk) > ({kind}, {after})"

    def _for_export(self) -> None:
        """Once per transaction: no parallel workers (starting one cost 5-7 ms of a 28 ms
        batch, and a key-ordered walk with a LIMIT gains nothing from it) and no JIT (an
        export query's cost estimate is over the JIT threshold, and compiling it costs
        tens of ms a query for expressions evaluated once per row)."""
        if not self._export_ready:
            self.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true), "
                         "set_config('jit', 'off', true)")
            self._export_ready = True

    def id_list_condition(self, builder: SqlBuilder, column: str, ids: list[str]) -> str:
        return (f"{column} IN (SELECT i COLLATE \"C\" FROM "
                f"unnest({builder.value(ids)}::text[]) AS i)")

    def _allocate_keys(self, versions: int, created: int, existing: list[tuple[str, str]],
                       types: Collection[str]
                       ) -> tuple[list[int], list[int], dict[tuple[str, str], int]]:
        """The change feed's gate, the new seqs and resource keys, and the existing
        resources' keys in one round trip (a pipeline; then the mark, which needs the
        first seq, goes with the writes when the flush is pipelined): a single create
        took three round trips here before."""
        with self._pipelined():
            announce = not self._announced and versions > 0
            if announce:
                announce_writer(self.execute)
            keys = self.execute(_NEW_KEYS, (versions, created))
            found = self.execute(*self._existing_pks_query(existing)) if existing else None
            seqs, pks = keys.fetchone()
            pks_found = {(row[0], row[1]): int(row[2])
                         for row in (found.fetchall() if found is not None else ())}
        self._after_allocating(list(seqs), types, announce)
        return list(seqs), list(pks), pks_found

    def _pipelined(self) -> AbstractContextManager[Any]:
        """A pipeline, unless the flush has one open already (a nested one would sync
        on entering: a round trip more)."""
        return nullcontext() if self._pipelining else self.connection.pipeline()

    def _after_allocating(self, seqs: list[int], types: Collection[str], announced: bool
                          ) -> None:
        """Mark the first seq for the feed's readers and signal the types written
        (postgres/feed.py), as :meth:`_allocate_seqs` does."""
        fresh = set(types) - self._signalled
        self._signalled |= fresh
        if announced:
            mark_seq(self.execute, seqs[0],
                     signal_payload(self.source, fresh) if fresh and self.source else None)
            self._announced = True
        elif fresh:
            self.signal(fresh)

    def _existing_pks_query(self, keys: list[tuple[str, str]]) -> tuple[str, list[Any]]:
        builder = SqlBuilder(self.registry)
        return builder.render("SELECT r.res_type, r.res_id, r.pk FROM resource r WHERE "
                              + self._keys_condition(builder, keys, "r"))

    def _allocate_seqs(self, count: int, types: Collection[str] = ()) -> list[int]:
        """Seqs for new versions; the first ones of a transaction are announced to the
        change feed's readers, which stop below them until it ends, and the types are
        signalled to other processes at commit, in the same statement (postgres/feed.py)."""
        fresh = set(types) - self._signalled
        self._signalled |= fresh
        if self._announced or count == 0:
            if fresh:  # a later flush of this transaction wrote other types too
                self.signal(fresh)
            return self._next_values("resource_version", "seq", count)
        announce_writer(self.execute)
        seqs = self._next_values("resource_version", "seq", count)
        mark_seq(self.execute, seqs[0],
                 signal_payload(self.source, fresh) if fresh and self.source else None)
        self._announced = True
        return seqs

    def signal(self, words: Collection[str]) -> None:
        if words and self.source:
            self.execute("SELECT pg_notify(?, ?)", (CHANNEL, signal_payload(self.source, words)))

    def _allocate_pks(self, count: int) -> list[int]:
        return self._next_values("resource", "pk", count)

    def _next_values(self, table: str, column: str, count: int) -> list[int]:
        if count == 0:
            return []
        rows = self.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', '{column}')) "
                            "FROM generate_series(1, ?)", (count,)).fetchall()
        return [int(row[0]) for row in rows]

    def flush(self, commit: bool = False) -> None:
        """A flush of at most :data:`PIPELINED_VERSIONS` versions is one pipeline of
        INSERTs: its keys in one round trip, its rows in another (a single create sent
        16 statements and waited for the server 19 times, ADR core-write-round-trips);
        a larger one goes by COPY, which is faster per row. Locks not yet sent go
        first (:meth:`_send_locks`). ``commit``: end the pipeline with COMMIT
        (:meth:`commit`); with no pipeline, the caller commits after."""
        if not self._pending:
            if commit and (self._unsent or self._begun):  # BEGIN, locks, COMMIT at once
                with self.connection.pipeline():
                    self._send_locks()
                    self._commit_in_pipeline()
            elif not commit:
                self._send_locks()
            return
        try:
            if len(self._pending) <= PIPELINED_VERSIONS:
                self._pipelining, self._combined = True, []
                try:
                    with self.connection.pipeline():
                        super().flush()
                        self._insert_combined(self.connection.cursor(), self._combined)
                        if commit:
                            self._commit_in_pipeline()
                finally:
                    self._pipelining, self._combined = False, None
            else:
                super().flush()
        except psycopg.errors.UniqueViolation:
            raise Conflict("A resource in this request was written by another request at the "
                           "same time; nothing was stored. Retry the request.") from None


    def _commit_in_pipeline(self) -> None:
        """COMMIT, last in the open pipeline (its result is read as the pipeline ends)."""
        SqlSession.execute(self, "COMMIT")
        self._commit_sent = True

    def _insert_combined(self, cursor: Any,
                         inserts: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]
                         ) -> None:
        """A small flush's inserts: the versions as before, the new resources and every
        index row in one statement (:func:`combined_rows`), sent last, after the flush's
        DELETEs of stale index rows.  psycopg spends some 40 us of Python on each
        statement, and a single create inserted into seven tables: the flush was half
        of a create's CPU.  Rows :func:`combined_rows` cannot carry exactly are
        inserted table by table, as before."""
        combined = [(table, rows) for table, _, rows in inserts if table in COMBINED_TABLES]
        payload = combined_rows(combined) if len(combined) > 1 else None
        for table, columns, rows in inserts:
            if payload is None or table not in COMBINED_TABLES:
                SqlSession._insert_rows(self, cursor, table, columns, rows)
        if payload is not None:
            cursor.execute(_COMBINED_INSERT, {"rows": payload.decode()})


# the tables one combined insert fills (resource_version's content is bytea, not JSON),
# each with its columns' types as inserted
COMBINED_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "resource": tuple(zip(RESOURCE_INSERT_COLUMNS, ("bigint", "ctext", "ctext", "bigint",
                                                    "integer", "bool", "bigint"), strict=True)),
    **{table: tuple(zip(("res_pk", "h_param", *columns), index_column_types(table),
                        strict=True))
       for table, columns in INDEX_TABLES.items()},
}
_JSON_TYPES = {"bigint": (int,), "integer": (int,), "real": (int, float), "ctext": (str,),
               "bool": (bool,)}
_SQL_TYPES = {"bigint": "bigint", "integer": "integer", "real": "double precision",
              "ctext": "text", "bool": "boolean"}


def _combined_insert() -> str:
    """One INSERT per table of :data:`COMBINED_TABLES`, each reading its rows from one
    array of the JSON parameter (data-modifying ``WITH`` clauses all run, read or not;
    an empty array inserts nothing), so the text never changes and stays prepared.

    The parameter is read as ``jsonb``, not ``json``: ``json`` is text that every
    operator parses again, so each table's ``-> n`` parsed the whole payload and each
    ``->>`` its row again; the statement's execution took twice as long (EXPLAIN
    ANALYZE of an MLLP batch's flush: 1.42 against 0.68 ms), and it was a fifth of
    PostgreSQL's CPU under MLLP ingest (issue 16). ``jsonb`` keeps numbers as
    ``numeric``, the exact decimal ``orjson`` wrote, so the casts give the same values."""
    inserts = []
    for number, (table, columns) in enumerate(COMBINED_TABLES.items()):
        values = ", ".join(f"(e ->> {position})::{_SQL_TYPES[kind]}"
                           for position, (_, kind) in enumerate(columns))
        inserts.append(f"INSERT INTO {table} ({', '.join(name for name, _ in columns)}) "
                       f"SELECT {values} FROM jsonb_array_elements(%(rows)s::jsonb -> {number}) e")
    *first, last = inserts
    return "WITH " + ", ".join(f"i{number} AS ({insert})"
                               for number, insert in enumerate(first)) + " " + last


_COMBINED_INSERT = _combined_insert()


def combined_rows(inserts: list[tuple[str, list[tuple[Any, ...]]]]) -> bytes | None:
    """The rows of ``inserts`` as the JSON the combined insert reads: an array per table
    of :data:`COMBINED_TABLES`, in its order; None when a value would not come out of
    JSON exactly as the table-by-table INSERT stores it (a value of another Python type
    than its column's, a NUL character, a number orjson refuses): then the caller
    inserts table by table.

    JSON is exact for these types: integers as written, floats in their shortest
    round-trip form (PostgreSQL reads them back to the same double), text as UTF-8.
    """
    by_table = dict(inserts)
    arrays = []
    for table, columns in COMBINED_TABLES.items():
        rows = by_table.get(table, ())
        accepted = [_JSON_TYPES[kind] for _, kind in columns]
        for row in rows:
            for value, types in zip(row, accepted, strict=True):
                if value is not None and (type(value) not in types or (
                        type(value) is float and not math.isfinite(value))):
                    return None  # (orjson writes NaN and infinities as null)
        arrays.append(rows)
    try:
        payload = orjson.dumps(arrays)
    except orjson.JSONEncodeError:
        return None
    return None if b"\\u0000" in payload else payload


class _SchemaLock:
    """Migration transactions that hold the schema's advisory lock: several servers
    starting with --migrate at once apply each step once, one after the other."""

    dialect = "postgresql"

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    @contextmanager
    def schema_transaction(self) -> Iterator[runner.Step]:
        with self._pool.connection() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            yield runner.Step(self.dialect, connection)


class PostgresRepository(Repository):
    dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8,
                 migrate: bool = False) -> None:
        self.url = url
        ensure_database(url)
        self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                    kwargs={"autocommit": True})
        self._pool.wait(timeout=30)
        schema = _SchemaLock(self._pool)
        try:
            runner.check(schema, migrate=migrate)  # refuse before any DDL
            self._create_schema()
            self.applied_migrations = runner.apply_pending(schema)
        except BaseException:
            self._pool.close()  # a refused database leaves no connections behind
            raise
        self._statistics = StatisticsKeeper(url)
        self._horizon_lock = threading.Lock()
        self._horizon_found = threading.Condition(self._horizon_lock)
        self._last_horizon = 0
        self._horizon_runs = 0  # horizon computations begun (numbered from 1)
        self._horizon_done = 0  # the number of the last one that finished
        self._horizon_running = False
        self._last_allocated = 0
        self._source = uuid.uuid4().hex[:12]  # names this repository's commit signals

    commit_signals = True
    # a group commit's batches at once (each holds one of the pool's connections while
    # it runs): ADR "group commit: concurrent committers on PostgreSQL"
    concurrent_writers = 3

    def listen(self, stopping: threading.Event) -> Iterator[frozenset[str]]:
        """Other repositories' commit signals, on a connection of its own (LISTEN holds
        it for as long as it listens, so not one of the pool's)."""
        return listen(self.url, self._source, stopping)

    def _create_schema(self) -> None:
        """Create what the core schema lacks. A database that has it all is only read:
        ``CREATE INDEX IF NOT EXISTS`` locks its table (SHARE) even when the index
        exists, so running the statements on every open stalled a live server's writes
        and could deadlock with them (a writer holding one table, the DDL another)."""
        with self._pool.connection() as connection:
            if _schema_complete(connection):
                return
        with self._pool.connection() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in statements("postgresql"):
                connection.execute(statement)
            row = connection.execute("SELECT COUNT(*) FROM hygeia_schema").fetchone()
            if row is not None and row[0] == 0:
                connection.execute("INSERT INTO hygeia_schema VALUES (%s)", (CORE.baseline,))

    @contextmanager
    def transaction(self, *, flush_to_disk: bool = True) -> Iterator[PostgresSession]:
        limit = current_limit(writing=True)
        with _timed_out(limit, writing=True), self._pool.connection() as connection:
            settings = [] if flush_to_disk else ["SET LOCAL synchronous_commit = off"]
            # (off: the WAL writer flushes it within a fraction of a second)
            if limit is not None:
                settings.append(_statement_timeout(limit))
            # BEGIN and the settings go with the first statement, COMMIT with the flush
            # (PostgresSession.begin_with_next, commit): the connection is in autocommit
            # mode, so the session sends them itself
            session = PostgresSession(connection, self._source)
            session.begin_with_next(settings)
            try:
                yield session
                session.commit()
            except BaseException:
                _rolled_back(session)
                raise
            session.run_after_commit()
        self._statistics.written(session.rows_written)

    @contextmanager
    def reader(self) -> Iterator[PostgresSession]:
        """A repeatable-read, read-only transaction; BEGIN and its settings go in one
        round trip (a pipeline, as :meth:`transaction`'s): the feed consumers, the
        NEWS2 engine and the analytics refresher open one for each batch they read,
        two round trips each before (issue 16)."""
        limit = current_limit(writing=False)
        settings = ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"]
        if limit is not None:
            settings.append(_statement_timeout(limit))
        with _timed_out(limit, writing=False), self._pool.connection() as connection, \
                ExitStack() as transaction:
            with connection.pipeline():  # (a statement each: a pipeline takes one a time)
                transaction.enter_context(psycopg.Transaction(connection))
                for setting in settings:
                    connection.execute(setting)
            yield PostgresSession(connection)

    def feed_horizon(self) -> int:
        """Below the lowest seq of any transaction still writing (postgres/feed.py); the
        last horizon this repository found while a writer is between two statements."""
        return self._horizon()[0]

    def _horizon(self) -> tuple[int, int]:
        """(feed horizon, highest seq handed out), from a computation begun after this
        call: one running already when it came may have missed a commit it must see.

        Every commit wakes each change-feed consumer of the process at once, and each
        asked for the horizon (two queries, one of them over ``pg_locks``); callers
        arriving while one computation runs now share the next one.  A horizon found
        after the call began is as safe and as fresh as one the call found itself.
        """
        with self._horizon_found:
            arrived = self._horizon_runs
            while self._horizon_running and self._horizon_done <= arrived:
                self._horizon_found.wait()
            if self._horizon_done > arrived:
                return self._last_horizon, self._last_allocated
            self._horizon_runs += 1
            run, self._horizon_running = self._horizon_runs, True
        found: tuple[int | None, int] | None = None
        try:
            with self._pool.connection() as connection:  # autocommit: a snapshot each
                found = safe_horizon(connection, _VERSION_SEQUENCE)
        finally:  # a failed computation serves nobody: those waiting start their own
            with self._horizon_found:
                self._horizon_running = False
                if found is not None:
                    horizon, allocated = found
                    if horizon is not None:
                        self._last_horizon = max(self._last_horizon, horizon)
                    self._last_allocated = max(self._last_allocated, allocated)
                    self._horizon_done = run
                self._horizon_found.notify_all()
        return self._last_horizon, self._last_allocated

    def _known_horizon(self) -> int:
        """The highest horizon found yet, by any thread."""
        with self._horizon_lock:
            return self._last_horizon

    def _found_horizon(self, horizon: int) -> None:
        """Share a horizon a read found with the threads that ask later."""
        with self._horizon_lock:
            self._last_horizon = max(self._last_horizon, horizon)

    def changes(self, after: int, limit: int = 500, types: Collection[str] | None = None
                ) -> ChangeBatch:
        """The horizon and the batch read in one round trip (``look_at_feed``)."""
        limit_seconds = current_limit(writing=False)
        timeout_ms = None if limit_seconds is None else round(limit_seconds * 1000)
        wanted = None if types is None else sorted(types)
        # only a horizon known before the rows were read may stand in for the look's own:
        # one another thread found meanwhile may cover versions that committed after the
        # rows' snapshot, and the batch would end past rows it never saw
        known = self._known_horizon()
        with _timed_out(limit_seconds, writing=False), self._pool.connection() as connection:
            look = look_at_feed(connection, _VERSION_SEQUENCE, after, limit, wanted,
                                timeout_ms)
        if look.horizon is None:  # a writer was unaccounted for: the older horizon stands
            horizon = known
        else:
            horizon = look.horizon
            self._found_horizon(horizon)
        return batch_of(look.rows, after, limit, horizon, retained_after=look.retained_after,
                        newest=look.allocated)

    def pool_usage(self) -> PoolUsage:
        """From psycopg_pool's own counters (``get_stats`` without resetting them)."""
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        return PoolUsage(size=size, in_use=size - stats.get("pool_available", 0),
                         waiting=stats.get("requests_waiting", 0))

    def schema_version(self, timeout: float) -> int | None:
        # the pool's own wait (30 s) would hold a readiness probe while the database is down
        with self._pool.connection(timeout=timeout) as connection, connection.transaction():
            connection.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            row = connection.execute("SELECT MAX(version) FROM hygeia_schema").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def recorded_versions(self, timeout: float) -> dict[str, int]:
        with self._pool.connection(timeout=timeout) as connection, connection.transaction():
            connection.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            return runner.recorded_versions(runner.Step(self.dialect, connection))

    def close(self) -> None:
        self._pool.close()


def _rolled_back(session: PostgresSession) -> None:
    """Roll ``session``'s transaction back after a failure; a connection too broken for
    that is the pool's to discard (it checks each one returned), and the failure that
    got here is the one to raise."""
    with suppress(psycopg.Error):
        session.rollback()


def _statement_timeout(seconds: float) -> str:
    """PostgreSQL cancels a statement of this transaction that runs longer, on its own:
    the query stops even when the client or this server has gone away."""
    return f"SET LOCAL statement_timeout = {max(1, round(seconds * 1000))}"


@contextmanager
def _timed_out(limit: float | None, writing: bool) -> Iterator[None]:
    """A statement cancelled by its timeout becomes a 503 OperationOutcome; a deadlock
    (two writers share-locking and updating the same resources in opposite orders, as
    referential integrity's checks can) a 409 the client may retry."""
    try:
        yield
    except psycopg.errors.QueryCanceled:
        raise QueryTimeout.after(limit, writing) from None
    except psycopg.errors.DeadlockDetected:
        raise Conflict("This request and another one running at the same time waited for "
                       "each other's resources; nothing was stored. Retry the request."
                       ) from None


class StatisticsKeeper:
    """Runs VACUUM (ANALYZE) in the background as the tables grow.

    The search planner needs statistics: right after a bulk load, before
    autovacuum's next round, PostgreSQL guessed a plan 19x slower than with
    statistics (664 ms against 35 ms for a code + value-quantity search on 200
    patients).  VACUUM also marks pages all-visible, which lets the covering
    lookup indexes answer without visiting the table (index-only scans): 173 ->
    198 requests/s on the 1,000-patient search benchmark, for a 3-second VACUUM
    of its 1.3 GB.  It runs whenever the rows written since the last one double
    (from 5,000 rows), on its own connection, never two at a time; it does not
    block writers.
    """

    def __init__(self, conninfo: str, first: int = 5_000) -> None:
        self._conninfo = conninfo
        self._written = 0
        self._next = first
        self._lock = threading.Lock()
        self._running = threading.Lock()

    def written(self, rows: int) -> None:
        with self._lock:
            self._written += rows
            if self._written < self._next:
                return
            self._next = self._written * 2
        threading.Thread(target=self._analyze, name="hygeia-analyze", daemon=True).start()

    def _analyze(self) -> None:
        if not self._running.acquire(blocking=False):
            return
        try:  # not a pooled connection: a VACUUM of a large database would hold one of
            # the few the requests, feed consumers and deliveries share for seconds
            with psycopg.connect(self._conninfo, autocommit=True,
                                 connect_timeout=10) as connection:
                connection.execute("VACUUM (ANALYZE)")
        except psycopg.Error:  # statistics are an optimisation; never fail a request
            pass
        finally:
            self._running.release()


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist yet (first start)."""
    params: dict[str, Any] = conninfo_to_dict(url)
    try:
        psycopg.connect(url, connect_timeout=10).close()
        return
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise
    name = str(params.get("dbname") or "")
    maintenance = make_conninfo(url, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as connection, \
            suppress(psycopg.errors.DuplicateDatabase):
        connection.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
