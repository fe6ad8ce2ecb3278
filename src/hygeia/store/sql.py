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

from typing import Any

from hygeia.fhir.search.query import IdClause, Query, TokenClause, TokenValue
from hygeia.fhir.search.rows import IndexRows
from hygeia.store.base import HistoryQuery, SearchPage, Session, StoredVersion, rows_to_versions
from hygeia.store.schema import INDEX_TABLES

# IndexRows field -> the side table that stores it
INDEX_FIELDS = (("string_index", "strings"), ("token_index", "tokens"),
                ("token_text_index", "token_texts"), ("reference_index", "references"),
                ("date_index", "dates"), ("number_index", "numbers"),
                ("quantity_index", "quantities"), ("uri_index", "uris"),
                ("composite_index", "composites"))

VERSION_COLUMNS = "v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.content, " \
                  "v.method, v.seq"


class SqlSession(Session):
    """A session over one DB-API connection; SQL is written with ``?`` placeholders."""

    placeholder = "?"

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._pending: list[tuple[StoredVersion, IndexRows]] = []

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        cursor = self.connection.cursor()
        cursor.execute(self._sql(sql), params)
        return cursor

    def current(self, resource_type: str, id: str, *, for_update: bool = False
                ) -> StoredVersion | None:
        self.flush()
        rows = self.execute(
            f"SELECT {VERSION_COLUMNS} FROM resource r JOIN resource_version v ON v.seq = r.seq "
            "WHERE r.res_type = ? AND r.res_id = ?" + self._for_update(for_update),
            (resource_type, id),
        ).fetchall()
        return rows_to_versions(None, iter(rows))[0] if rows else None

    def _for_update(self, wanted: bool) -> str:
        return ""

    def version(self, resource_type: str, id: str, version: int) -> StoredVersion | None:
        self.flush()
        rows = self.execute(
            f"SELECT {VERSION_COLUMNS} FROM resource_version v "
            "WHERE v.res_type = ? AND v.res_id = ? AND v.version = ?",
            (resource_type, id, version),
        ).fetchall()
        return rows_to_versions(None, iter(rows))[0] if rows else None

    def put(self, version: StoredVersion, rows: IndexRows) -> None:
        self._pending.append((version, rows))

    def flush(self) -> None:
        """Write buffered versions with a few batched statements instead of several per resource.

        A 273-entry transaction becomes a handful of ``executemany`` calls, which
        psycopg pipelines; per-resource round trips were most of PostgreSQL ingest time.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        seqs = self._allocate_seqs(len(pending))
        cursor = self.connection.cursor()
        cursor.executemany(self._sql(
            "INSERT INTO resource_version (seq, res_type, res_id, version, last_updated, "
            "deleted, method, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            [(seq, v.resource_type, v.id, v.version, v.last_updated, v.deleted, v.method,
              v.content) for seq, (v, _) in zip(seqs, pending, strict=True)])
        latest = {(v.resource_type, v.id): (seq, v, rows)
                  for seq, (v, rows) in zip(seqs, pending, strict=True)}
        cursor.executemany(self._sql(
            "INSERT INTO resource (res_type, res_id, seq, version, deleted, last_updated) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (res_type, res_id) DO UPDATE SET "
            "seq = excluded.seq, version = excluded.version, deleted = excluded.deleted, "
            "last_updated = excluded.last_updated"),
            [(v.resource_type, v.id, seq, v.version, v.deleted, v.last_updated)
             for seq, v, _ in latest.values()])
        self._replace_index_rows(cursor, [(v, rows) for _, v, rows in latest.values()])

    def _replace_index_rows(self, cursor: Any, latest: list[tuple[StoredVersion, IndexRows]]
                            ) -> None:
        """Index rows describe the current version only: drop the old ones, insert the new."""
        stale = [(v.resource_type, v.id) for v, _ in latest if v.version > 1]
        for table, field_name in INDEX_FIELDS:
            if stale:
                cursor.executemany(self._sql(
                    f"DELETE FROM {table} WHERE res_type = ? AND res_id = ?"), stale)
            rows = [(v.resource_type, v.id, *_flat(table, row)) for v, index in latest
                    if not v.deleted for row in getattr(index, field_name)]
            if rows:
                marks = ", ".join("?" for _ in range(3 + len(INDEX_TABLES[table])))
                columns = ", ".join(("res_type", "res_id", "param", *INDEX_TABLES[table]))
                cursor.executemany(self._sql(
                    f"INSERT INTO {table} ({columns}) VALUES ({marks})"), rows)

    def _allocate_seqs(self, count: int) -> list[int]:
        """``count`` new, increasing ``resource_version.seq`` values."""
        raise NotImplementedError

    def search(self, query: Query) -> SearchPage:
        self.flush()
        where, params = self._where(query)
        total = self.execute(f"SELECT COUNT(*) FROM resource r WHERE {where}", params).fetchone()[0]
        rows = self.execute(
            f"SELECT {VERSION_COLUMNS} FROM resource r JOIN resource_version v ON v.seq = r.seq "
            f"WHERE {where} ORDER BY r.last_updated DESC, r.res_id LIMIT ? OFFSET ?",
            [*params, query.count, query.offset],
        ).fetchall()
        return SearchPage(int(total), rows_to_versions(None, iter(rows)))

    def _where(self, query: Query) -> tuple[str, list[Any]]:
        conditions = ["r.res_type = ?", "r.deleted = ?"]
        params: list[Any] = [query.resource_type, False]
        for clause in query.clauses:
            sql, values = _clause_sql(clause)
            conditions.append(sql)
            params.extend(values)
        return " AND ".join(conditions), params

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


def _flat(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    return flatten_composite(row) if table == "composite_index" else row


def flatten_composite(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """(param, group, component, values) -> (param, grp, comp, t1, t2, t3, n1, n2).

    Component values keep their order: numbers fill n1, n2; everything else
    (text or None) fills t1..t3.  A quantity (value, system, code, unit) thus
    lands as n1=value, t1=system, t2=code, t3=unit; a token as t1=system, t2=code.
    """
    param, group, component, values = row
    texts: list[Any] = []
    numbers: list[Any] = []
    for value in values:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        (numbers if is_number else texts).append(value)
    texts = [*texts, None, None, None][:3]
    numbers = [*numbers, None, None][:2]
    return (param, group, component, *texts, *numbers)


def _clause_sql(clause: IdClause | TokenClause) -> tuple[str, list[Any]]:
    if isinstance(clause, IdClause):
        marks = ", ".join("?" for _ in clause.ids)
        return f"r.res_id IN ({marks})", list(clause.ids)
    alternatives: list[str] = []
    params: list[Any] = []
    for value in clause.values:
        sql, values = _token_value_sql(value)
        alternatives.append(sql)
        params.extend(values)
    return (
        "EXISTS (SELECT 1 FROM token_index t WHERE t.res_type = r.res_type "
        f"AND t.res_id = r.res_id AND t.param = ? AND ({' OR '.join(alternatives)}))",
        [clause.param, *params],
    )


def _token_value_sql(value: TokenValue) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    if value.code is not None:
        parts.append("t.code = ?")
        params.append(value.code)
    if value.system == "":
        parts.append("t.system IS NULL")
    elif value.system is not None:
        parts.append("t.system = ?")
        params.append(value.system)
    return "(" + (" AND ".join(parts) or "1 = 1") + ")", params


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
