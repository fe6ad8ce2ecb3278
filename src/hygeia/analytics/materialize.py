"""Materialized views: a view's rows kept as a table and as a Parquet file.

The table is named ``view_`` + the view's ``name``: in the schema ``analytics`` on
PostgreSQL, beside the core tables on SQLite. These are the pillar's own tables,
created with plain ``CREATE`` statements; core tables are only read through the
store's API. A registry table (``analytics.views`` / ``analytics_views``) records
which view owns each name, so a second view of the same name is refused rather
than overwriting the first, and ``hygeia sql`` finds the Parquet files.

The change feed keeps the table current (:mod:`hygeia.analytics.refresh`); the
Parquet file follows the table (:func:`write_parquet`): rewritten from one snapshot
of the table and of the refresher's cursor, aside and renamed into place, its feed
position recorded in a second table (``analytics.parquet`` / ``analytics_parquet``)
only once the file is in place. A crash part way leaves the previous file whole and
its older position, so the next pass writes it again.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hygeia.analytics.formats import parquet_chunks
from hygeia.analytics.source import Selection, stored_resources
from hygeia.analytics.views import CompiledView, ViewError
from hygeia.fhir.outcome import BadRequest, Conflict
from hygeia.store import Repository, feed_position, reading, writing

KEY = "_resource_key"  # the resource a row comes from: what a refresh replaces
CONSUMER = "analytics-views"  # the change-feed cursor of the table refresher
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,54}$")
INSERT_ROWS = 500
PARQUET_PAGE = 10_000  # table rows per query when a Parquet file is rewritten

_SQL_TYPES = {
    "boolean": "BOOLEAN",
    "integer": "BIGINT",
    "positiveInt": "BIGINT",
    "unsignedInt": "BIGINT",
    "integer64": "BIGINT",
    "decimal": "DOUBLE PRECISION",
}


@dataclass(frozen=True, slots=True)
class Materialized:
    name: str
    table: str
    parquet: Path
    rows: int


def _postgres(repository: Repository) -> bool:
    """Whether ``repository`` is on PostgreSQL: its ``dialect``, not a reader session's
    placeholder (a transaction each time, and the Parquet refresher and the view
    refresher asked on every batch of the feed)."""
    return repository.dialect == "postgresql"


def _names(postgres: bool) -> tuple[str, str]:
    """(registry table, prefix for view tables)."""
    return ("analytics.views", "analytics.") if postgres else ("analytics_views", "")


def _positions(postgres: bool) -> str:
    """The table of each Parquet file's feed position."""
    return "analytics.parquet" if postgres else "analytics_parquet"


_READY: set[tuple[str, int]] = set()  # (database, process) where the tables exist


def _ensure_registry(repository: Repository, postgres: bool) -> None:
    registry, _ = _names(postgres)
    where = getattr(repository, "url", None) or getattr(repository, "path", None)
    ready = (str(where), os.getpid())
    if where is not None and ready in _READY:
        return
    with writing(repository) as session:
        if postgres:
            session.execute("CREATE SCHEMA IF NOT EXISTS analytics")
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {registry} (name TEXT PRIMARY KEY, "
            "fingerprint TEXT NOT NULL, parquet TEXT NOT NULL, row_count BIGINT NOT NULL, "
            "resource_type TEXT NOT NULL, view TEXT NOT NULL, since_seq BIGINT NOT NULL)"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {_positions(postgres)} (name TEXT PRIMARY KEY, "
            "seq BIGINT NOT NULL)"
        )
        lock = _lock(postgres)
        session.execute(f"CREATE TABLE IF NOT EXISTS {lock} (id INTEGER PRIMARY KEY, "
                        "turns BIGINT NOT NULL)")
        session.execute(f"INSERT INTO {lock} (id, turns) VALUES (1, 0) ON CONFLICT (id) "
                        "DO NOTHING")
    if where is not None:
        _READY.add(ready)


def _lock(postgres: bool) -> str:
    return "analytics.refresh_lock" if postgres else "analytics_refresh_lock"


def _is_postgres(session: Any) -> bool:
    return bool(session.placeholder != "?")


def take_turn(session: Any) -> None:
    """Serialize this write transaction with the refresher's and with registrations (a
    row lock on PostgreSQL; SQLite has one writer anyway): whoever comes second sees
    what the first committed, the registry included."""
    session.execute(f"UPDATE {_lock(_is_postgres(session))} SET turns = turns + 1 "
                    "WHERE id = 1")


def fingerprint(view: dict[str, Any]) -> str:
    """What identifies a view across runs: its url when it has one, else its content."""
    if isinstance(view.get("url"), str):
        return "url:" + view["url"]
    content = {k: v for k, v in view.items() if k not in ("id", "meta", "text")}
    return (
        "sha256:" + hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )


def table_name(view: CompiledView) -> str:
    if view.name is None or not NAME.match(view.name):
        raise BadRequest(
            "A materialized view needs a name of letters, digits and _ (at most 55, a letter "
            "first): the table is view_ + name.",
            expression="ViewDefinition.name",
        )
    return "view_" + view.name


def _column_sql(name: str, kind: str | None) -> str:
    return f'"{name}" {_SQL_TYPES.get(kind or "", "TEXT")}'


def _cell(value: Any, kind: str | None) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    if kind in _SQL_TYPES:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def materialize(
    repository: Repository, raw: dict[str, Any], view: CompiledView, folder: Path
) -> Materialized:
    """Run ``view`` over the whole store into its table (replaced in one transaction) and
    its Parquet file (written aside and renamed into place)."""
    name = table_name(view)
    postgres = _postgres(repository)
    registry, prefix = _names(postgres)
    _ensure_registry(repository, postgres)
    owner = fingerprint(raw)
    with reading(repository) as session:
        found = session.execute(
            f"SELECT fingerprint FROM {registry} WHERE name = ?", (name,)
        ).fetchone()
    if found is not None and found[0] != owner:
        raise Conflict(
            f"A different view already owns the name {view.name!r} (table {name}); "
            "rename one of them.",
            expression="ViewDefinition.name",
        )
    folder.mkdir(parents=True, exist_ok=True)
    parquet = (folder / f"{name}.parquet").resolve()
    partial = _partial(parquet)
    types = {**view.column_types, KEY: None}
    columns = [*view.columns, KEY]
    count = 0
    since = repository.feed_horizon()  # the change feed refreshes the table from here on

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for resource in stored_resources(repository.reader, Selection(view.resource)):
            key = f"{resource['resourceType']}/{resource.get('id')}"
            for row in view.resource_rows(resource):
                count += 1
                yield {**row, KEY: key}

    with open(partial, "wb") as out:
        for chunk in parquet_chunks(columns, types, rows()):
            out.write(chunk)
    with writing(repository) as session:
        # the refresher may have moved past ``since`` meanwhile, without this view: take
        # its turn, then apply what it applied without us, so it goes on from there
        take_turn(session)
        caught_up = max(since, feed_position(repository, CONSUMER) or 0)
        if found is None:
            exists = _table_exists(session, postgres, name)
            if exists:
                raise Conflict(
                    f"A table {prefix}{name} already exists and is not a materialized "
                    "view; rename the view.",
                    expression="ViewDefinition.name",
                )
        session.execute(f"DROP TABLE IF EXISTS {prefix}{name}")
        session.execute(
            f"CREATE TABLE {prefix}{name} ("
            + ", ".join(_column_sql(c, types.get(c)) for c in columns)
            + ")"
        )
        session.execute(f'CREATE INDEX {name}_key ON {prefix}{name} ("{KEY}")')
        _copy_rows(session, f"{prefix}{name}", columns, types, parquet=partial)
        count += _replay(repository, session, f"{prefix}{name}", view, since, caught_up)
        since = caught_up
        session.execute(f"DELETE FROM {registry} WHERE name = ?", (name,))
        session.execute(
            f"INSERT INTO {registry} (name, fingerprint, parquet, row_count, resource_type, "
            "view, since_seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, owner, str(parquet), count, view.resource, orjson.dumps(raw).decode(), since),
        )
        # the file holds at least the table's rows at ``since``; the refresher rewrites it
        # from the table once the feed has moved on
        positions = _positions(postgres)
        session.execute(f"DELETE FROM {positions} WHERE name = ?", (name,))
        session.execute(f"INSERT INTO {positions} (name, seq) VALUES (?, ?)", (name, since))
    os.replace(partial, parquet)
    return Materialized(view.name or "", prefix + name, parquet, count)


def _partial(parquet: Path) -> Path:
    """Where a Parquet file is written before it is renamed into place: a name of this
    process and thread, so two writers never write into one file. Files aside left by
    processes that died (kill -9 mid-write) are removed first."""
    sweep_partials(parquet)
    return parquet.with_name(f"{parquet.name}.{os.getpid()}-{threading.get_ident()}.partial")


def sweep_partials(parquet: Path) -> int:
    """Remove the files aside of ``parquet`` whose writing process no longer runs, and
    return how many went. A killed writer cannot clean up after itself; a live one (this
    process or another) is left alone, so a sweep never races a write."""
    removed = 0
    for partial in parquet.parent.glob(f"{glob.escape(parquet.name)}.*.partial"):
        owner = partial.name[len(parquet.name) + 1:].split("-", 1)[0]
        if owner.isdigit() and not _running(int(owner)):
            partial.unlink(missing_ok=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replay(repository: Repository, session: Any, table: str, view: CompiledView, after: int,
            through: int) -> int:
    """Apply the change feed's events of the view's type in (``after``, ``through``] to a
    new table, in feed order (replacing a resource's rows is idempotent, so events the
    run already saw do no harm); the change in the table's row count."""
    change = 0
    while after < through:
        batch = repository.changes(after, 500, (view.resource,))
        for event in batch.events:
            if event.seq > through:
                return change
            resource = None
            if event.interaction != "delete":
                stored = session.version(event.resource_type, event.id, event.version)
                if stored is not None and stored.content is not None:
                    resource = orjson.loads(stored.content)
            key = f"{event.resource_type}/{event.id}"
            before = session.execute(
                f'SELECT count(*) FROM {table} WHERE "{KEY}" = ?', (key,)).fetchone()[0]
            try:
                change += replace_rows(session, table, view, key, resource) - int(before)
            except ViewError:
                change += replace_rows(session, table, view, key, None) - int(before)
        if batch.position <= after:
            return change
        after = batch.position
    return change


def _table_exists(session: Any, postgres: bool, name: str) -> bool:
    if postgres:
        row = session.execute("SELECT to_regclass(?)", (f"analytics.{name}",)).fetchone()
        return row[0] is not None
    row = session.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return row is not None


def _copy_rows(
    session: Any, table: str, columns: list[str], types: dict[str, str | None], parquet: Path
) -> None:
    """The table's rows, read back from the Parquet just written (so both hold the same)."""
    import pyarrow.parquet as pq

    quoted = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=INSERT_ROWS):
        rows = [
            tuple(_cell(row.get(c), types.get(c)) for c in columns) for row in batch.to_pylist()
        ]
        if rows:
            session.execute_many(f"INSERT INTO {table} ({quoted}) VALUES ({marks})", rows)


@dataclass(frozen=True, slots=True)
class Registered:
    """A materialized view as the refreshers need it: its table, compiled view, the feed
    position its table is current from, its Parquet file and that file's position."""

    table: str
    view: CompiledView
    since: int
    name: str = ""
    parquet: Path = Path()
    parquet_seq: int = 0


def ensure_registry(repository: Repository) -> None:
    """Create the registry tables if this process has not seen them in this database."""
    _ensure_registry(repository, _postgres(repository))


def registered(repository: Repository) -> list[Registered]:
    """Every materialized view, compiled, with the feed position its table is current from."""
    ensure_registry(repository)
    with reading(repository) as session:
        return registered_in(session)


def registered_in(session: Any) -> list[Registered]:
    """:func:`registered`, read in ``session`` (the refresher's own transaction)."""
    from hygeia.analytics.views import compile_view

    postgres = _is_postgres(session)
    registry, prefix = _names(postgres)
    found = session.execute(
        f"SELECT v.name, v.view, v.since_seq, v.parquet, p.seq FROM {registry} v "
        f"LEFT JOIN {_positions(postgres)} p ON p.name = v.name ORDER BY v.name"
    ).fetchall()
    return [
        Registered(prefix + name, compile_view(orjson.loads(view)), int(since), name,
                   Path(parquet), int(seq or 0))
        for name, view, since, parquet, seq in found
    ]


def write_parquet(repository: Repository, target: Registered, cursor_name: str) -> int:
    """Rewrite ``target``'s Parquet file from its table and return the feed position it
    now holds: the table's rows and the refresher's cursor ``cursor_name`` are read in one
    snapshot, a page of :data:`PARQUET_PAGE` rows at a time in key order (memory stays
    bounded), into a file aside that is renamed into place before the position is
    recorded."""
    postgres = _postgres(repository)
    view = target.view
    types = {**view.column_types, KEY: None}
    columns = [*view.columns, KEY]
    quoted = ", ".join(f'"{c}"' for c in columns)
    partial = _partial(target.parquet)
    position = target.since
    try:
        with reading(repository) as session:
            found = session.execute(
                "SELECT position FROM feed_cursor WHERE name = ?", (cursor_name,)
            ).fetchone()
            if found is not None:
                position = max(position, int(found[0]))

            def rows() -> Iterator[dict[str, Any]]:
                # a resource's rows in the order they were inserted (the view's order)
                order = f'"{KEY}", ' + ("ctid" if postgres else "rowid")
                after = ""
                while True:
                    page = session.execute(
                        f'SELECT {quoted} FROM {target.table} WHERE "{KEY}" > ? '
                        f"ORDER BY {order} LIMIT {PARQUET_PAGE}",
                        (after,),
                    ).fetchall()
                    whole = len(page) < PARQUET_PAGE
                    if not whole:  # the last resource's rows may go on: read it again next
                        last = page[-1][-1]
                        page = [row for row in page if row[-1] != last]
                        if not page:
                            raise RuntimeError(
                                f"{last} has more than {PARQUET_PAGE:,} rows in "
                                f"{target.table}"
                            )
                    for row in page:
                        yield dict(zip(columns, row, strict=True))
                    if whole:
                        return
                    after = page[-1][-1]

            target.parquet.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as out:
                for chunk in parquet_chunks(columns, types, rows()):
                    out.write(chunk)
        os.replace(partial, target.parquet)
    finally:
        partial.unlink(missing_ok=True)
    positions = _positions(postgres)
    with writing(repository) as session:
        session.execute(
            f"UPDATE {positions} SET seq = ? WHERE name = ? AND seq < ?",
            (position, target.name, position),
        )
    return position


def replace_rows(
    session: Any, table: str, view: CompiledView, key: str, resource: dict[str, Any] | None
) -> int:
    """Replace the rows of one resource in a materialized table (none when deleted)."""
    session.execute(f'DELETE FROM {table} WHERE "{KEY}" = ?', (key,))
    if resource is None or resource.get("resourceType") != view.resource:
        return 0
    rows = view.resource_rows(resource)
    columns = [*view.columns, KEY]
    types = view.column_types
    quoted = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    values = [tuple([*(_cell(r.get(c), types.get(c)) for c in view.columns), key]) for r in rows]
    if values:
        session.execute_many(f"INSERT INTO {table} ({quoted}) VALUES ({marks})", values)
    return len(values)


def materialized(repository: Repository) -> list[tuple[str, Path, int]]:
    """(table name, Parquet file, rows) of every materialized view."""
    postgres = _postgres(repository)
    registry, _ = _names(postgres)
    _ensure_registry(repository, postgres)
    with reading(repository) as session:
        found = session.execute(
            f"SELECT name, parquet, row_count FROM {registry} ORDER BY name"
        ).fetchall()
    return [(name, Path(path), int(count)) for name, path, count in found]
