"""SQL shared by the SQLite and PostgreSQL backends.

Both databases speak the same SQL for everything the store does (upserts with
ON CONFLICT, RETURNING, integer timestamps), so one session class serves both;
a backend only supplies its connection, its placeholder style and its lock.

Tables (see docs/architecture.md for the column-by-column description):

* ``resource_version`` - every version ever written, keyed by a global ``seq``.
* ``resource`` - one row per logical resource pointing at its current version.
* ``token_index`` - token search values of current versions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterable, Sequence
from dataclasses import replace
from functools import lru_cache
from itertools import product
from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.parameters import default_registry
from hygeia.fhir.search.query import CompartmentClause, IdClause, ParameterClause, Query
from hygeia.fhir.search.results import WHEN_FREE, Include
from hygeia.fhir.search.rows import CompositeRow, IndexRows
from hygeia.store.base import (
    ChangeEvent,
    Head,
    HistoryQuery,
    PreparedRows,
    Referrer,
    RowsSource,
    SearchPage,
    Session,
    StoredVersion,
    rows_to_versions,
)
from hygeia.store.cursor import decode_cursor, encode_cursor
from hygeia.store.export_sql import ExportRow, ExportSlice, export_query
from hygeia.store.hashing import code_hash, param_hash
from hygeia.store.schema import COMPOSITE_COMPONENTS, INDEX_TABLES
from hygeia.store.search_sql import (
    SqlBuilder,
    after_cursor,
    key_bound_sql,
    key_range_sql,
    order_keys,
    where_sql,
)

# IndexRows field -> the side table that stores it
# (token_index is written by _token_rows: it folds IndexRows.token_texts into the tokens)
INDEX_FIELDS = (("string_index", "strings"), ("token_index", "tokens"),
                ("reference_index", "references"),
                ("date_index", "dates"), ("number_index", "numbers"),
                ("quantity_index", "quantities"), ("uri_index", "uris"),
                ("composite_index", "composites"))

VERSION_INSERT_COLUMNS = ("seq", "res_type", "res_id", "version", "last_updated", "deleted",
                          "method", "content")
RESOURCE_INSERT_COLUMNS = ("pk", "res_type", "res_id", "seq", "version", "deleted",
                           "last_updated")

# candidate keys per round of a key walk (SqlSession._walk_keys): small first, since a
# typical page fills from the first candidates, then growing to bound the round trips
_FIRST_BATCH = 64
ACCURATE = "accurate"  # _total's default: every match counted
_SEQS_PER_QUERY = 5_000  # versions read by seq in one query (versions_of)
_LAST_BATCH = 4096
_MIN_BIGINT, _MAX_BIGINT = -(2 ** 63), 2 ** 63 - 1
_DATE_ROUNDS = 3  # bounds tried by a date sort's walk (64 -> 512 -> 4,096 rows, then all)
_HEAD_CHUNK = 1000  # keys per lookup query (_rows_by_keys)
_REFERRER_CHUNK = 500  # targets per reverse reference lookup (three values bound each)

# values one statement may bind: SQLite's limit (PostgreSQL's is 65,535), so a search
# that is too large is refused the same way on both (a chain whose first reference may
# point at 65 types repeats each of 100 values hundreds of times)
MAX_BOUND_VALUES = 32_766

VERSION_COLUMNS = "v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.content, " \
                  "v.method, v.seq"


class SqlSession(Session):
    """A session over one DB-API connection; SQL is written with ``?`` placeholders."""

    placeholder = "?"

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._pending: list[tuple[StoredVersion, RowsSource]] = []
        self._pending_keys: set[tuple[str, str]] = set()  # (type, id) of what _pending holds
        self._pending_types: set[str] = set()  # the types among them
        self._written_types: set[str] = set()  # every type put, flushed or not
        self.rows_written = 0  # resource and index rows this session wrote

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        if len(params) > MAX_BOUND_VALUES:
            raise BadRequest(f"The request needs {len(params):,} values in one database query; "
                             f"at most {MAX_BOUND_VALUES:,} fit. Use fewer search values or "
                             "name the target types of a chain (subject:Patient.name).",
                             code="too-costly")
        cursor = self.connection.cursor()
        cursor.execute(self._sql(sql), params)
        return cursor

    def execute_many(self, sql: str, rows: Sequence[tuple | list]) -> Any:
        cursor = self.connection.cursor()
        cursor.executemany(self._sql(sql), rows)
        return cursor

    def _flush_for(self, keys: Iterable[tuple[str, str]]) -> None:
        """Flush only when a buffered version is one of ``keys``: a read by key sees
        nothing of the others, and a writer that reads between its writes (a listener
        storing a batch of readings) keeps its writes batched (measured on PostgreSQL:
        one flush per MQTT reading was 70% of storing it)."""
        if self._pending_keys and not self._pending_keys.isdisjoint(keys):
            self.flush()

    def _flush_for_search(self, query: Query) -> None:
        """Flush unless no buffered version can change what ``query`` finds: a search
        whose clauses all read the searched types' own rows (no chain, no ``_has``)
        sees nothing of other types' writes. A writer that looks a patient up by
        identifier between its writes (an HL7 v2 listener storing a batch of messages)
        keeps its writes batched: one flush per message was a fifth of the MLLP group
        committer's time on SQLite."""
        if not self._pending:
            return
        types = query.types or ((query.resource_type,) if query.resource_type else ())
        if types and all(isinstance(clause, IdClause | ParameterClause | CompartmentClause)
                         for clause in query.clauses) and \
                self._pending_types.isdisjoint(types):
            return
        self.flush()

    def current(self, resource_type: str, id: str, *, for_update: bool = False
                ) -> StoredVersion | None:
        self._flush_for(((resource_type, id),))
        rows = self.execute(
            f"SELECT {VERSION_COLUMNS} FROM resource r JOIN resource_version v ON v.seq = r.seq "
            "WHERE r.res_type = ? AND r.res_id = ?" + self._for_update(for_update),
            (resource_type, id),
        ).fetchall()
        return rows_to_versions(None, iter(rows))[0] if rows else None

    def _for_update(self, wanted: bool) -> str:
        return ""

    def _for_share(self, wanted: bool) -> str:
        return ""

    def referrers(self, targets: list[tuple[str, str]], base_url: str, limit: int
                  ) -> list[Referrer]:
        self.flush()
        found: list[Referrer] = []
        for start in range(0, len(targets), _REFERRER_CHUNK):
            if len(found) >= limit:
                break
            chunk = targets[start:start + _REFERRER_CHUNK]
            builder = SqlBuilder(self.registry)
            condition = " OR ".join(
                f"(ri.target_type = {builder.value(kind)} AND ri.target_id = {builder.value(id)}"
                f" AND (ri.url IS NULL OR ri.url = {builder.value(f'{base_url}{kind}/{id}')}))"
                for kind, id in chunk)
            sql, params = builder.render(
                "SELECT DISTINCT r.res_type, r.res_id, ri.target_type, ri.target_id "
                "FROM reference_index ri JOIN resource r ON r.pk = ri.res_pk "
                f"WHERE ({condition}) AND r.deleted = {builder.value(False)} "
                f"ORDER BY r.res_type, r.res_id LIMIT {int(limit - len(found))}")
            found.extend(Referrer((row[0], row[1]), (row[2], row[3]))
                         for row in self.execute(sql, params).fetchall())
        return found

    def version(self, resource_type: str, id: str, version: int) -> StoredVersion | None:
        self._flush_for(((resource_type, id),))
        rows = self.execute(
            f"SELECT {VERSION_COLUMNS} FROM resource_version v "
            "WHERE v.res_type = ? AND v.res_id = ? AND v.version = ?",
            (resource_type, id, version),
        ).fetchall()
        return rows_to_versions(None, iter(rows))[0] if rows else None

    def put(self, version: StoredVersion, rows: RowsSource) -> None:
        if self.on_put is not None:
            self.on_put(self, version)
        self._pending.append((version, rows))
        self._pending_keys.add((version.resource_type, version.id))
        self._pending_types.add(version.resource_type)
        self._written_types.add(version.resource_type)

    @property
    def written_types(self) -> Collection[str]:
        return self._written_types

    def heads(self, keys: list[tuple[str, str]], *, for_update: bool = False,
              for_share: bool = False) -> dict[tuple[str, str], Head]:
        self._flush_for(keys)
        lock = self._for_update(True) if for_update else self._for_share(for_share)
        rows = self._rows_by_keys(
            "r.res_type, r.res_id, r.version, r.last_updated, r.deleted FROM resource r",
            keys, lock)
        return {(row[0], row[1]): Head(int(row[2]), int(row[3]), bool(row[4])) for row in rows}

    def _rows_by_keys(self, select: str, keys: list[tuple[str, str]], suffix: str = ""
                      ) -> list[Any]:
        """``SELECT {select} WHERE`` the ``resource r`` row is one of ``keys``, in chunks,
        each chunk's keys bound as one parameter (see :meth:`_keys_condition`)."""
        found: list[Any] = []
        for start in range(0, len(keys), _HEAD_CHUNK):
            builder = SqlBuilder(self.registry)
            condition = self._keys_condition(builder, keys[start:start + _HEAD_CHUNK], "r")
            found.extend(self.execute(*builder.render(
                f"SELECT {select} WHERE {condition}{suffix}")).fetchall())
        return found

    def flush(self) -> None:
        """Write buffered versions with a few batched statements instead of several per resource.

        A 273-entry transaction becomes a handful of ``executemany`` calls, which
        psycopg pipelines; per-resource round trips were most of PostgreSQL ingest time.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._pending_keys = set()
        types, self._pending_types = self._pending_types, set()
        first_version: dict[tuple[str, str], int] = {}
        for v, _ in pending:
            first_version.setdefault((v.resource_type, v.id), v.version)
        new = [key for key, version in first_version.items() if version == 1]
        existing = [key for key, version in first_version.items() if version != 1]
        seqs, new_pks, pks = self._allocate_keys(len(pending), len(new), existing, types)
        pks.update(zip(new, new_pks, strict=True))
        cursor = self.connection.cursor()
        self._insert_rows(cursor, "resource_version", VERSION_INSERT_COLUMNS,
                          [(seq, v.resource_type, v.id, v.version, v.last_updated, v.deleted,
                            v.method, v.content)
                           for seq, (v, _) in zip(seqs, pending, strict=True)])
        latest: dict[tuple[str, str], tuple[int, StoredVersion, RowsSource]] = {}
        for seq, (v, rows) in zip(seqs, pending, strict=True):
            latest[(v.resource_type, v.id)] = (seq, v, rows)
        # created in this flush: plain rows (COPY on PostgreSQL); the others are upserts
        created = [(pks[key], v.resource_type, v.id, seq, v.version, v.deleted, v.last_updated)
                   for key, (seq, v, _) in latest.items() if first_version[key] == 1]
        if created:
            self._insert_rows(cursor, "resource", RESOURCE_INSERT_COLUMNS, created)
        updated = [(pks[key], v.resource_type, v.id, seq, v.version, v.deleted, v.last_updated)
                   for key, (seq, v, _) in latest.items() if first_version[key] != 1]
        if updated:
            cursor.executemany(self._sql(
                f"INSERT INTO resource ({', '.join(RESOURCE_INSERT_COLUMNS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (res_type, res_id) DO UPDATE SET "
                "seq = excluded.seq, version = excluded.version, deleted = excluded.deleted, "
                "last_updated = excluded.last_updated"), updated)
        # last: rows extracted in the offload helper have had the longest to arrive
        self._replace_index_rows(cursor, [pks[key] for key in existing], _all_rows_now(
            [(pks[key], v, rows) for key, (_, v, rows) in latest.items() if not v.deleted]))

    def reindex(self, keys: list[tuple[str, str]],
                index: Callable[[dict[str, Any]], IndexRows]) -> int:
        """Read the current versions inside this transaction, so a concurrent update can
        never have its newer rows overwritten by rows of the version read earlier."""
        self.flush()
        current = []
        rows = self._rows_by_keys("r.pk, v.res_type, v.content, r.deleted FROM resource r "
                                  "JOIN resource_version v ON v.seq = r.seq", keys)
        for pk, kind, content, deleted in rows:
            if deleted:
                continue
            resource = orjson.loads(bytes(content))
            current.append((int(pk), StoredVersion(kind, resource.get("id", ""), 0, 0,
                                                   False, None, "PUT", 0),
                            index(resource)))
        self._replace_index_rows(self.connection.cursor(), [pk for pk, _, _ in current], current)
        return len(current)

    def export_rows(self, part: ExportSlice, after: int, limit: int
                    ) -> Generator[ExportRow, None, None]:
        """The rows as the cursor steps through them, never a whole list in memory."""
        self.flush()
        sql, params = export_query(self, part, after, limit)
        yield from self.execute(sql, params)

    def types_present(self, types: list[str]) -> list[str]:
        """One index probe per type on (res_type, pk): a few ms for all 146 types."""
        self.flush()
        return [kind for kind in types if self.execute(
            "SELECT pk FROM resource WHERE res_type = ? ORDER BY res_type, pk LIMIT 1",
            (kind,)).fetchone()]

    def export_key_bound(self, kind: str, after: str) -> str:
        """Keys of ``resource r`` after ``after`` within type ``kind`` (both SQL values);
        SQLite serves it as one range of the (res_type, pk) index."""
        return f"r.pk > {after}"

    def id_list_condition(self, builder: SqlBuilder, column: str, ids: list[str]) -> str:
        """``column`` is one of ``ids``, bound as one parameter however many there are."""
        listed = builder.value(orjson.dumps(ids).decode())
        return f"{column} IN (SELECT value FROM json_each({listed}))"

    def _existing_pks(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        rows = self._rows_by_keys("r.res_type, r.res_id, r.pk FROM resource r", keys)
        return {(row[0], row[1]): int(row[2]) for row in rows}

    def _replace_index_rows(self, cursor: Any, stale: list[int],
                            written: Sequence[tuple[int, StoredVersion, IndexRows | PreparedRows]]
                            ) -> None:
        """Index rows describe the current version only: drop the old ones, insert the new."""
        current = [(pk, v, rows) for pk, v, rows in written if isinstance(rows, IndexRows)]
        prepared = [((pk,), rows.tables) for pk, _, rows in written
                    if isinstance(rows, PreparedRows)]
        for position, (table, field_name) in enumerate(INDEX_FIELDS):
            if stale:
                cursor.executemany(self._sql(f"DELETE FROM {table} WHERE res_pk = ?"),
                                   [(pk,) for pk in stale])
            rows = _prefixed(prepared, position)
            if current:
                rows += _table_rows(table, field_name, current)
            if rows:
                self._insert_rows(cursor, table, ("res_pk", "h_param", *INDEX_TABLES[table]),
                                  rows)
                self.rows_written += len(rows)

    def _insert_rows(self, cursor: Any, table: str, columns: tuple[str, ...],
                     rows: list[tuple[Any, ...]]) -> None:
        cursor.executemany(_insert_sql(table, columns, self.placeholder), rows)

    def _allocate_keys(self, versions: int, created: int, existing: list[tuple[str, str]],
                       types: Collection[str]
                       ) -> tuple[list[int], list[int], dict[tuple[str, str], int]]:
        """What a flush needs before it writes: ``versions`` new seqs (of versions of
        ``types``), ``created`` new resource keys, and the keys of the ``existing``
        resources.  One step, so a backend can ask for all of it in one round trip."""
        return (self._allocate_seqs(versions, types), self._allocate_pks(created),
                self._existing_pks(existing))

    def _allocate_seqs(self, count: int, types: Collection[str] = ()) -> list[int]:
        """``count`` new, increasing ``resource_version.seq`` values, for versions of
        ``types``."""
        raise NotImplementedError

    def _allocate_pks(self, count: int) -> list[int]:
        """``count`` new ``resource.pk`` values."""
        raise NotImplementedError

    def search(self, query: Query) -> SearchPage:
        self._flush_for_search(query)
        types = query.types or (query.resource_type,)
        options = query.options
        if options.summary == "count" or options.count == 0:
            return SearchPage(self._count(query, types), [])
        page = self._page(query, types, None)
        if options.total == "none" or page.total is not None:
            return page
        if options.cursor is None and page.next_cursor is None:
            # the first page holds every match: the count is known without counting
            return replace(page, total=len(page.matches))
        if options.total == WHEN_FREE:
            return page
        return replace(page, total=self._count(query, types))

    def _count(self, query: Query, types: tuple[str, ...]) -> int:
        builder = SqlBuilder(self.registry)
        sql, params = builder.render(
            f"SELECT COUNT(*) FROM resource r WHERE {where_sql(builder, types, query.clauses)}")
        return int(self.execute(sql, params).fetchone()[0])

    # walk a date sort's newest (oldest) index rows before sorting every match
    # (_page_by_date); only where the planner can drive a query from that bound
    date_sort_walk = False
    date_walk_from = 1_000  # matches from which the walk is tried (fewer: sort them all)

    def _page(self, query: Query, types: tuple[str, ...], total: int | None) -> SearchPage:
        if not query.options.sort:
            return self._page_by_key(query, types, total)
        if self.date_sort_walk:
            return self._page_by_date(query, types, total)
        return self._sorted_page(query, types, total)

    def _page_by_date(self, query: Query, types: tuple[str, ...], total: int | None
                      ) -> SearchPage:
        """A page sorted first by a date, from the resources whose date reaches past
        the ``batch``-th newest (oldest) of that parameter's index rows, a growing
        batch at a time, when the query has at least ``date_walk_from`` matches;
        otherwise, or when no bound holds a page, the plain sort.

        Sorting by a date reads every match's date first: 60,000 for a monitored
        patient's ``Observation?patient=X&_sort=-date&_count=1``.  Every resource
        outside the bound sorts after every one inside it (its date is older), so a
        full page inside the bound is exactly the page the whole sort would give.
        With the bound as a clause of its own, the planner can walk it from the
        ``(h_param, high)`` index when the other clauses are broad, and still drive
        from them when they are narrow.  The matches are counted first (the total
        the page carries, when one is asked for; else only up to ``date_walk_from``):
        a few hundred are sorted faster whole than through any bound.  Forward pages
        only (a cursor going back sorts as usual).
        """
        options = query.options
        first = options.sort[0]
        if first.parameter is None or first.parameter.type != "date":
            return self._sorted_page(query, types, total)
        probe = SqlBuilder(self.registry)
        hashes = probe.param_hashes(types, first.parameter.code)
        kinds = tuple("number" if key.numeric else "text"
                      for key in order_keys(probe, options.sort, types))
        direction, boundary = decode_cursor(options.cursor, kinds)
        if len(hashes) != 1 or direction == "p" or (
                boundary and not _MIN_BIGINT <= boundary[0] <= _MAX_BIGINT):
            # (past the dated resources, the cursor holds the sort's sentinel)
            return self._sorted_page(query, types, total)
        if options.total == ACCURATE:
            matches = total = self._count(query, types)
        elif _bounds_parameter(query, first.parameter.code):
            # its own date range can drive the query (date_index_high), and counting
            # first would double the work of a narrow window such as NEWS2's readings
            return self._sorted_page(query, types, total)
        else:
            matches = self._matches_up_to(query, types, self.date_walk_from)
        column = "high" if first.descending else "low"
        batch = max(_FIRST_BATCH, 4 * (options.count + 1))
        for _ in range(_DATE_ROUNDS if matches >= self.date_walk_from else 0):
            bound = self._date_bound(hashes[0], column, first.descending,
                                     boundary[0] if boundary else None, batch)
            if bound is None:
                break  # fewer rows than the batch: the plain sort reads them all
            page = self._sorted_page(query, types, total, (hashes[0], column, bound))
            if page.next_cursor is not None:  # a full page, and one more match
                return page
            batch *= 8
        return self._sorted_page(query, types, total)

    def _matches_up_to(self, query: Query, types: tuple[str, ...], limit: int) -> int:
        """How many resources match, counting no further than ``limit``."""
        builder = SqlBuilder(self.registry)
        sql, params = builder.render(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM resource r WHERE "
            f"{where_sql(builder, types, query.clauses)} LIMIT {builder.value(limit)}) m")
        return int(self.execute(sql, params).fetchone()[0])

    def _date_bound(self, h_param: int, column: str, descending: bool, after: Any,
                    batch: int) -> int | None:
        """The ``batch``-th newest ``high`` (oldest ``low``) of one date parameter at or
        past a cursor's date, from the (h_param, high) or (h_param, low) index alone."""
        past = "" if after is None else f" AND d.{column} {'<=' if descending else '>='} ?"
        row = self.execute(
            f"SELECT d.{column} FROM date_index d WHERE d.h_param = ?{past} "
            f"ORDER BY d.{column} {'DESC' if descending else 'ASC'} LIMIT 1 OFFSET ?",
            (h_param, *(() if after is None else (int(after),)), batch - 1)).fetchone()
        return None if row is None else int(row[0])

    def _sorted_page(self, query: Query, types: tuple[str, ...], total: int | None,
                     within: tuple[int, str, int] | None = None) -> SearchPage:
        """A ``_sort`` page; ``within`` (h_param, column, bound) keeps the resources
        whose date of that parameter reaches the bound (see :meth:`_page_by_date`)."""
        options = query.options
        builder = SqlBuilder(self.registry)
        where = where_sql(builder, types, query.clauses)
        if within is not None:
            h_param, column, bound = within
            where += (f" AND r.pk IN (SELECT w.res_pk FROM date_index w WHERE w.h_param = "
                      f"{builder.value(h_param)} AND w.{column} "
                      f"{'>=' if column == 'high' else '<='} {builder.value(bound)})")
        keys = order_keys(builder, options.sort, types)
        kinds = tuple("number" if key.numeric else "text" for key in keys)
        direction, boundary = decode_cursor(options.cursor, kinds)
        backwards = direction == "p"
        columns = ", ".join(f"COALESCE({k.expression}, {builder.value(k.sentinel())}) AS k{n}"
                            for n, k in enumerate(keys))
        order = ", ".join(f"q.k{n} {'DESC' if k.descending != backwards else 'ASC'}"
                          for n, k in enumerate(keys))
        after = after_cursor(builder, keys, boundary, backwards) if boundary else "1 = 1"
        sql, params = builder.render(
            f"SELECT q.seq, {', '.join(f'q.k{n}' for n in range(len(keys)))} FROM "
            f"(SELECT r.seq, {columns} FROM resource r WHERE {where}) q "
            f"WHERE {after} ORDER BY {order} LIMIT {builder.value(options.count + 1)}")
        return self._finish_page(sql, params, options.count, backwards, boundary is not None,
                                 total)

    def _page_by_key(self, query: Query, types: tuple[str, ...], total: int | None
                     ) -> SearchPage:
        """Without ``_sort``, pages follow the resource key: the database walks the
        driving clause's matches in key order and stops after one page, instead of
        sorting every match (a broad query with ``_count=20`` costs 20 rows, not 20,000).
        """
        options = query.options
        direction, boundary = decode_cursor(options.cursor, ("key",))
        backwards = direction == "p"
        after = boundary[0] if boundary else None
        rows = self._walk_keys(query, types, after, backwards, options.count + 1)
        if rows is None:
            builder = SqlBuilder(self.registry)
            where = where_sql(builder, types, query.clauses)
            if after is not None:
                where += f" AND r.pk {'<' if backwards else '>'} {builder.value(after)}"
            sql, params = builder.render(
                f"SELECT r.seq, r.pk FROM resource r WHERE {where} ORDER BY r.pk "
                f"{'DESC' if backwards else 'ASC'} LIMIT {builder.value(options.count + 1)}")
            rows = self.execute(sql, params).fetchall()
        return self._finish_rows(rows, options.count, backwards, boundary is not None, total)

    def _walk_keys(self, query: Query, types: tuple[str, ...], after: int | None,
                   backwards: bool, wanted: int) -> list[Any] | None:
        """A key-ordered page, found by walking the driving clause's keys a range at a time.

        Given ``pk IN (candidates) ORDER BY pk LIMIT n``, both databases build the
        whole candidate list first (PostgreSQL hashes it and sorts the survivors: 221
        ms for 10,000 body heights, when a 20-row page needs the first 139).  Here the
        candidates are taken in pk order from the lookup index, a growing range at a
        time, and the full query runs on each range until the page is full.  None when
        the driving clause has no key source.
        """
        rows: list[Any] = []
        batch = _FIRST_BATCH
        while len(rows) < wanted:
            builder = SqlBuilder(self.registry)
            bound_sql = key_bound_sql(builder, types, query.clauses, after, backwards, batch)
            if bound_sql is None:
                return None
            found = self.execute(*builder.render(bound_sql)).fetchone()
            bound = None if found is None else int(found[0])
            low, high = (after, bound) if not backwards else (  # [bound, after) in (,]
                None if bound is None else bound - 1, None if after is None else after - 1)
            builder = SqlBuilder(self.registry)
            keys = key_range_sql(builder, types, query.clauses, low, high)
            where = where_sql(builder, types, query.clauses, keys=keys)
            if low is not None:
                where += f" AND r.pk > {builder.value(low)}"
            if high is not None:
                where += f" AND r.pk <= {builder.value(high)}"
            sql, params = builder.render(
                f"SELECT r.seq, r.pk FROM resource r WHERE {where} ORDER BY r.pk "
                f"{'DESC' if backwards else 'ASC'} LIMIT {builder.value(wanted - len(rows))}")
            rows.extend(self.execute(sql, params).fetchall())
            if bound is None:
                break
            after, batch = bound, min(batch * 4, _LAST_BATCH)
        return rows

    def _finish_page(self, sql: str, params: list[Any], count: int, backwards: bool,
                     from_cursor: bool, total: int | None) -> SearchPage:
        """Run a page query (rows: seq, then the sort keys; one row more than a page)."""
        rows = self.execute(sql, params).fetchall()
        return self._finish_rows(rows, count, backwards, from_cursor, total)

    def _finish_rows(self, rows: list[Any], count: int, backwards: bool, from_cursor: bool,
                     total: int | None) -> SearchPage:
        """Turn a page's rows (one more than a page) into matches and the cursors."""
        more = len(rows) > count
        rows = rows[:count]
        if backwards:
            rows.reverse()
        matches = self._versions_by_seq([row[0] for row in rows])
        if not rows:
            return SearchPage(total, matches)
        has_next = more if not backwards else True
        has_previous = more if backwards else from_cursor
        return SearchPage(total, matches,
                          encode_cursor("n", list(rows[-1][1:])) if has_next else None,
                          encode_cursor("p", list(rows[0][1:])) if has_previous else None)

    def versions_of(self, events: Iterable[ChangeEvent]) -> list[StoredVersion]:
        """By ``seq``, the version table's key: one query per :data:`_SEQS_PER_QUERY`."""
        seqs = [event.seq for event in events]
        found: list[StoredVersion] = []
        for start in range(0, len(seqs), _SEQS_PER_QUERY):
            found.extend(self._versions_by_seq(seqs[start:start + _SEQS_PER_QUERY]))
        return found

    def _versions_by_seq(self, seqs: list[int]) -> list[StoredVersion]:
        if not seqs:
            return []
        marks = ", ".join("?" for _ in seqs)
        rows = self.execute(f"SELECT {VERSION_COLUMNS} FROM resource_version v "
                            f"WHERE v.seq IN ({marks})", seqs).fetchall()
        by_seq = {version.seq: version for version in rows_to_versions(None, iter(rows))}
        return [by_seq[seq] for seq in seqs if seq in by_seq]

    def included(self, owners: list[StoredVersion], include: Include,
                 reverse: bool, limit: int | None = None) -> list[StoredVersion]:
        """Resources ``owners`` reference through ``include`` (reversed: that reference them)."""
        self.flush()
        if not owners:
            return []
        builder = SqlBuilder(self.registry)
        pairs = self._owner_condition(builder, owners)
        filters = []
        if include.parameter is not None:
            sources = _include_sources(include, owners, reverse)
            filters.append(builder.param_match("ri", tuple(sources), include.parameter.code))
        if include.target_type is not None:
            filters.append(f"ri.target_type = {builder.value(include.target_type)}")
        if include.excluded_targets:
            filters.append(f"ri.target_type NOT IN "
                           f"({_literals(include.excluded_targets)})")
        extra = "".join(f" AND {f}" for f in filters)
        if reverse:
            source = ("" if include.source_type == "*"
                      else f" AND r.res_type = {builder.value(include.source_type)}")
            picked = (f"SELECT DISTINCT ri.res_pk AS pick FROM resource o JOIN reference_index ri "
                      f"ON ri.target_type = o.res_type AND ri.target_id = o.res_id "
                      f"WHERE ({pairs}){extra}")
            join = f"JOIN resource r ON r.pk = t.pick{source}"
        else:
            picked = (f"SELECT DISTINCT ri.target_type AS pick_type, ri.target_id AS pick_id "
                      f"FROM resource o JOIN reference_index ri ON ri.res_pk = o.pk "
                      f"WHERE ({pairs}){extra}")
            join = "JOIN resource r ON r.res_type = t.pick_type AND r.res_id = t.pick_id"
        sql, params = builder.render(
            f"SELECT {VERSION_COLUMNS} FROM ({picked}) t {join} "
            f"JOIN resource_version v ON v.seq = r.seq WHERE r.deleted = {builder.value(False)}"
            + ("" if limit is None else f" LIMIT {int(limit)}"))
        return rows_to_versions(None, iter(self.execute(sql, params).fetchall()))

    def _owner_condition(self, builder: SqlBuilder, owners: list[StoredVersion]) -> str:
        """SQL true for the ``resource o`` rows of ``owners``."""
        return self._keys_condition(builder, [(o.resource_type, o.id) for o in owners], "o")

    def _keys_condition(self, builder: SqlBuilder, keys: list[tuple[str, str]],
                        alias: str) -> str:
        """SQL true for the ``resource`` rows (named ``alias``) of the (type, id) ``keys``."""
        return " OR ".join(f"({alias}.res_type = {builder.value(kind)} AND "
                           f"{alias}.res_id = {builder.value(id)})" for kind, id in keys)

    def history(self, query: HistoryQuery) -> list[StoredVersion]:
        self.flush()
        conditions, params = _history_conditions(query)
        where = " AND ".join(conditions) or "1 = 1"
        rows = self.execute(
            f"SELECT {VERSION_COLUMNS} FROM resource_version v WHERE {where} "
            "ORDER BY v.seq DESC LIMIT ?",
            [*params, query.count],
        ).fetchall()
        return rows_to_versions(None, iter(rows))


def _bounds_parameter(query: Query, code: str) -> bool:
    """Whether a clause of ``query`` restricts the parameter ``code`` itself."""
    return any(isinstance(clause, ParameterClause) and clause.parameter.code == code
               and clause.missing is None and clause.modifier is None
               for clause in query.clauses)


def _literals(names: tuple[str, ...]) -> str:
    """Resource type names as SQL string literals (our own names, never client text), so
    the statement text repeats and its prepared form is reused."""
    assert all(name.isalnum() for name in names)
    return ", ".join(f"'{name}'" for name in names)


def _include_sources(include: Include, owners: list[StoredVersion], reverse: bool
                     ) -> list[str]:
    """The resource types whose parameter ``include`` names (h_param is per type)."""
    if include.source_type != "*":
        return [include.source_type]
    if reverse:
        return sorted(default_registry().types())
    return sorted({owner.resource_type for owner in owners})


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], placeholder: str) -> str:
    """The INSERT of one row into ``table``: built once, not at every flush (a single
    create inserts into seven tables)."""
    marks = ", ".join(placeholder for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def _rows_now(rows: RowsSource) -> IndexRows | PreparedRows:
    """The rows to write: a callable source (rows extracted elsewhere) is asked now."""
    return rows if isinstance(rows, IndexRows | PreparedRows) else rows()


def _all_rows_now(sources: list[tuple[int, StoredVersion, RowsSource]]
                  ) -> list[tuple[int, StoredVersion, IndexRows | PreparedRows]]:
    """Every source's rows, in the given order, asked for newest first: the newest
    writes are the ones never sent to the offload helper (its unfilled last batch), so
    they are extracted here while the helper finishes the batches sent before them."""
    rows = [_rows_now(source) for _, _, source in reversed(sources)]
    rows.reverse()
    return [(pk, v, found) for (pk, v, _), found in zip(sources, rows, strict=True)]


def _table_rows(table: str, field_name: str, current: list[tuple[int, StoredVersion, IndexRows]]
                ) -> list[tuple[Any, ...]]:
    """One table's rows for the resources (key, version, extracted rows) in ``current``."""
    if table == "token_index":
        return [row for pk, v, index in current for row in _token_rows(pk, v.resource_type, index)]
    if table == "composite_index":
        return [row for pk, v, index in current if index.composites
                for row in composite_rows(pk, v.resource_type, index.composites)]
    return [(pk, param_hash(v.resource_type, row[0]), *row[1:])
            for pk, v, index in current for row in getattr(index, field_name)]


def _prefixed(prepared: list[tuple[tuple[int], tuple[tuple[tuple[Any, ...], ...], ...]]],
              position: int) -> list[tuple[Any, ...]]:
    """One table's prepared rows with their owner's key put in front (tuple concatenation:
    half the cost of ``(pk, *row)``, and this runs for every row a bulk load writes)."""
    return [key + row for key, tables in prepared for row in tables[position]]


def prepare_rows(resource_type: str, index: IndexRows) -> PreparedRows:
    """``index`` in the side tables' form, without ``res_pk`` (see :class:`PreparedRows`).

    The same functions the write path uses build the rows, so a bulk load stores
    exactly what an ordinary write would; only the owner key is left out.
    """
    tables = []
    for table, field_name in INDEX_FIELDS:
        if table == "token_index":
            rows = _token_rows(None, resource_type, index)
        elif table == "composite_index":
            rows = composite_rows(None, resource_type, index.composites) \
                if index.composites else []
        else:
            rows = [(param_hash(resource_type, row[0]), *row[1:])
                    for row in getattr(index, field_name)]
        tables.append(tuple(rows))
    return PreparedRows(tuple(tables))


def _token_rows(pk: int | None, resource_type: str, index: IndexRows) -> list[tuple[Any, ...]]:
    """token_index rows (without ``res_pk`` when ``pk`` is None): each :text value
    rides on a token row of its parameter.

    A text pairs with any token row of the same parameter (a :text search asks
    whether *some* text matches, never which coding it came from); texts left
    over get rows of their own with system and code NULL, which token value
    conditions never match and ``:missing`` ignores.  One row instead of two for
    nearly every coded value.
    """
    texts: dict[str, list[str]] = {}
    for code, text in index.token_texts:
        texts.setdefault(code, []).append(text)
    owner = () if pk is None else (pk,)
    rows = []
    for code, system, value in index.tokens:
        param = param_hash(resource_type, code)
        waiting = texts.get(code)
        rows.append((*owner, param, code_hash(param, value), system, value,
                     waiting.pop() if waiting else None))
    for code, left in texts.items():
        param = param_hash(resource_type, code)
        rows.extend((*owner, param, code_hash(param, None), None, None, text) for text in left)
    return rows


_NO_COMPONENT = (None, None, None, None, None)
_PAD_TWO = _NO_COMPONENT * (COMPOSITE_COMPONENTS - 2)  # a row of two components' padding


def composite_rows(pk: int | None, resource_type: str, composites: list[CompositeRow]
                   ) -> list[tuple[Any, ...]]:
    """composite_index rows (without ``res_pk`` when ``pk`` is None): one per
    combination of one group's component values.

    Extraction gives one row per component value, grouped by ``group``; storing
    the combinations instead puts every component of a match in one row, so a
    composite search is one index range (``code-value-quantity=8480-6$gt140``:
    code and value bound together) instead of a join per component, and most
    groups (one value per component) take one row instead of two.
    """
    owner = () if pk is None else (pk,)
    if len(composites) == 2:  # one group of two single values: most composites, a fast path
        (code, group, first, values), (code2, group2, second, values2) = composites
        if first == 0 and second == 1 and group == group2 and code == code2:
            return [(*owner, param_hash(resource_type, code), *component_columns(values),
                     *component_columns(values2), *_PAD_TWO)]
    groups: dict[tuple[str, int], list[list[tuple[Any, ...]]]] = {}
    for code, group, component, values in composites:
        parts = groups.setdefault((code, group), [])
        while len(parts) <= component:
            parts.append([])
        parts[component].append(component_columns(values))
    rows = []
    for (code, _), parts in groups.items():
        # extraction writes complete groups only; a composite has 2 or 3 components (R4),
        # more are refused at registration
        if not 2 <= len(parts) <= COMPOSITE_COMPONENTS or not all(parts):
            continue
        param = param_hash(resource_type, code)
        padding = _NO_COMPONENT * (COMPOSITE_COMPONENTS - len(parts))
        for combination in product(*parts):
            rows.append((*owner, param, *(value for part in combination for value in part),
                         *padding))
    return rows


def component_columns(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """One component's values as (t1, t2, t3, n1, n2).

    Values keep their order: numbers fill n1, n2; everything else (text or None)
    fills t1..t3.  A quantity (low, high, system, code, unit) thus lands as
    n1=low, n2=high, t1=system, t2=code, t3=unit; a token as t1=system, t2=code.
    """
    texts: list[Any] = []
    numbers: list[Any] = []
    for value in values:
        if isinstance(value, _NUMBERS) and value.__class__ is not bool:
            numbers.append(value)
        else:
            texts.append(value)
    texts += _THREE_NONE
    numbers += _TWO_NONE
    return texts[0], texts[1], texts[2], numbers[0], numbers[1]


_NUMBERS = (int, float)
_THREE_NONE = (None, None, None)
_TWO_NONE = (None, None)


def _history_conditions(query: HistoryQuery) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if query.resource_type is not None:
        conditions.append("v.res_type = ?")
        params.append(query.resource_type)
    if query.id is not None:
        conditions.append("v.res_id = ?")
        params.append(query.id)
    if query.since is not None:
        conditions.append("v.last_updated >= ?")
        params.append(query.since)
    if query.at is not None:
        low, high = query.at
        # current during [low, high): written before high and not replaced before low
        conditions.append("v.last_updated < ? AND NOT EXISTS (SELECT 1 FROM resource_version n "
                          "WHERE n.res_type = v.res_type AND n.res_id = v.res_id "
                          "AND n.version = v.version + 1 AND n.last_updated <= ?)")
        params.extend([high, low])
    if query.before_seq is not None:
        conditions.append("v.seq < ?")
        params.append(query.before_seq)
    return conditions, params
