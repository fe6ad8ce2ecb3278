"""Row encodings of a view's output: json, ndjson, csv and Parquet, each streamed.

Every encoder takes the column names and types and an iterator of rows and yields
bytes as it goes; Parquet is written a row group at a time into a buffer that is
drained after each group, so memory stays bounded by the row group size.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

import orjson

FORMATS = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
ALIASES = {
    "application/json": "json",
    "application/fhir+json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/fhir+ndjson": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
}
ROW_GROUP = 10_000


def format_name(value: str | None) -> str | None:
    """The encoding a ``_format`` value names, or None when it names none we write."""
    if value is None:
        return "json"
    name = value.strip().lower()
    return name if name in FORMATS else ALIASES.get(name)


def encode(
    kind: str,
    columns: list[str],
    types: dict[str, str | None],
    rows: Iterable[dict[str, Any]],
    header: bool = True,
) -> Iterator[bytes]:
    if kind == "ndjson":
        return (orjson.dumps(row) + b"\n" for row in rows)
    if kind == "csv":
        return _csv(columns, rows, header)
    if kind == "parquet":
        return parquet_chunks(columns, types, rows)
    return _json(rows)


def _json(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    yield b"["
    first = True
    for row in rows:
        yield (b"" if first else b",") + orjson.dumps(row)
        first = False
    yield b"]"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return value


def _csv(columns: list[str], rows: Iterable[dict[str, Any]], header: bool) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for count, row in enumerate(rows, 1):
        writer.writerow([_cell(row.get(column)) for column in columns])
        if count % 1000 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


_ARROW_TYPES = {
    "boolean": "bool_",
    "integer": "int64",
    "positiveInt": "int64",
    "unsignedInt": "int64",
    "integer64": "int64",
    "decimal": "float64",
}


def arrow_schema(columns: list[str], types: dict[str, str | None]) -> Any:
    """Parquet column types from the view's column types: booleans, 64-bit integers and
    doubles where the view says so, text otherwise (collections as JSON text)."""
    import pyarrow as pa

    fields = []
    for column in columns:
        kind = types.get(column)
        factory = getattr(pa, _ARROW_TYPES.get(kind or "", "string"))
        fields.append(pa.field(column, factory()))
    return pa.schema(fields)


def _arrow_value(value: Any, kind: str | None) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    if kind == "boolean":
        return bool(value)  # SQLite hands a BOOLEAN column back as 0 or 1
    if kind in _ARROW_TYPES:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class _Chunks:
    """A write-only file for pyarrow that hands back what was written since last drained."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def parquet_chunks(
    columns: list[str], types: dict[str, str | None], rows: Iterable[dict[str, Any]]
) -> Iterator[bytes]:
    """Parquet, a row group of :data:`ROW_GROUP` rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(columns, types)
    sink = _Chunks()
    writer = pq.ParquetWriter(sink, schema)
    batch: list[dict[str, Any]] = []

    def flush() -> bytes:
        arrays = []
        for field in schema:
            try:  # a view's rows hold every column: one C-level pass per column
                values = list(map(itemgetter(field.name), batch))
            except KeyError:
                values = [row.get(field.name) for row in batch]
            try:  # most columns hold what their type says: pyarrow converts them at once
                arrays.append(pa.array(values, type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                kind = types.get(field.name)
                arrays.append(pa.array([_arrow_value(v, kind) for v in values],
                                       type=field.type))
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        batch.clear()
        return sink.drain()

    for row in rows:
        batch.append(row)
        if len(batch) >= ROW_GROUP:
            yield flush()
    if batch:
        yield flush()
    writer.close()
    yield sink.drain()
