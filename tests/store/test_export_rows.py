"""``Session.export_rows``: the bulk export read, on both backends.

PostgreSQL streams it with a binary ``COPY``, parsed by hand, so the bytes that
come out must be the stored bytes exactly: backslashes, escaped newlines, text
that means something in COPY's text format, every kind of UTF-8, and contents
large enough to be compressed or moved out of line by TOAST.
"""

from __future__ import annotations

import hashlib
import struct
from contextlib import closing

import orjson
import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository, StoredVersion
from hygeia.store.export_sql import ExportSlice
from hygeia.store.postgres.repository import binary_export_rows

AWKWARD = [
    {"text": "back\\slash, \\\\ two, \\N and \\. (COPY text markers), a tab\tand\r\nnewlines"},
    {"text": "quotes \" and ' and a NUL escape \u0000 and \u001f"},
    {"text": "é ü ß, 日本語, עברית, emoji 🧬🩺, a lone surrogate escape \\ud800"},
    {"text": "compressible " * 400},  # ~5 KB: TOAST compresses it in line
    # ~200 KB of hashes: even compressed too big for the row, so stored out of line
    {"blob": [hashlib.sha256(str(n).encode()).hexdigest() for n in range(3000)]},
]


def stored(repository: Repository, id: str, number: int, updated: int,
           extra: dict[str, object] | None = None, *, deleted: bool = False) -> bytes | None:
    content = None if deleted else orjson.dumps(
        {"resourceType": "Basic", "id": id, **(extra or {})})
    with repository.transaction() as session:
        session.put(StoredVersion("Basic", id, number, updated, deleted, content,
                                  "DELETE" if deleted else "PUT", 0), IndexRows())
    return content


def rows(repository: Repository, part: ExportSlice, after: int = 0, limit: int = 1000
         ) -> list[tuple[int, bytes | None]]:
    with repository.reader() as session, closing(
            session.export_rows(part, after, limit)) as found:
        return [(pk, None if content is None else bytes(content)) for pk, content in found]


def test_contents_come_out_byte_for_byte(repository: Repository) -> None:
    expected = [stored(repository, f"a{n}", 1, 1_000, extra)
                for n, extra in enumerate(AWKWARD)]
    found = rows(repository, ExportSlice("Basic", until=2_000))
    assert [content for _, content in found] == expected
    keys = [pk for pk, _ in found]
    assert keys == sorted(keys)
    # resuming after a key, a few at a time, walks the same rows
    first = rows(repository, ExportSlice("Basic", until=2_000), limit=2)
    rest = rows(repository, ExportSlice("Basic", until=2_000), after=first[-1][0])
    assert first + rest == found


def test_each_resource_as_it_stood_at_until(repository: Repository) -> None:
    kept = stored(repository, "kept", 1, 1_000)
    old = stored(repository, "changed", 1, 1_000, {"v": 1})
    stored(repository, "changed", 2, 3_000, {"v": 2})
    gone_later = stored(repository, "deleted-later", 1, 1_000)
    stored(repository, "deleted-later", 2, 3_000, deleted=True)
    stored(repository, "deleted-before", 1, 1_000)
    stored(repository, "deleted-before", 2, 1_500, deleted=True)
    stored(repository, "created-later", 1, 3_000)
    found = rows(repository, ExportSlice("Basic", until=2_000))
    # a key not exported still comes back (content None), so a walk can resume after it
    assert [content for _, content in found] == [kept, old, gone_later, None]
    since = rows(repository, ExportSlice("Basic", until=2_000, since=1_000))
    assert [content for _, content in since if content is not None] == [kept, old, gone_later]
    assert rows(repository, ExportSlice("Basic", until=2_000, since=1_200)) == [
        (found[1][0], None), (found[2][0], None), (found[3][0], None)]


# ------------------------------------------------ the binary COPY parser, fed by hand

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def row(key: int, content: bytes | None) -> bytes:
    if content is None:
        return struct.pack(">hiqi", 2, 8, key, -1)
    return struct.pack(">hiqi", 2, 8, key, len(content)) + content


def parsed(chunks: list[bytes]) -> list[tuple[int, bytes | None]]:
    return [(key, None if content is None else bytes(content))
            for key, content in binary_export_rows(chunks)]


def test_binary_rows_as_postgresql_sends_them_and_packed_together() -> None:
    header = SIGNATURE + struct.pack(">ii", 0, 0)
    as_sent = [header + row(1, b'{"a":"\\n"}'), row(2, None), row(3, b""), b"\xff\xff"]
    expected = [(1, b'{"a":"\\n"}'), (2, None), (3, b"")]
    assert parsed(as_sent) == expected
    extended = SIGNATURE + struct.pack(">ii", 0, 3) + b"xyz"  # a header extension is skipped
    assert parsed([extended + row(1, b"{}"), row(2, None) + row(3, b"") + b"\xff\xff"]) == [
        (1, b"{}"), (2, None), (3, b"")]
    assert parsed([header + b"\xff\xff"]) == []


@pytest.mark.parametrize("chunks", [
    [b"PGCOPY\n\xff\r\n\x01" + bytes(8)],  # not the signature
    [SIGNATURE + bytes(8) + row(1, b"{}")[:-1]],  # a row cut short
    [SIGNATURE + bytes(8) + struct.pack(">hiqi", 3, 8, 1, 0)],  # three columns
    [SIGNATURE + bytes(8) + b"\x00\x02\x00"],  # less than a row, and not the trailer
])
def test_binary_rows_refuse_what_they_cannot_read(chunks: list[bytes]) -> None:
    with pytest.raises((ValueError, struct.error)):
        parsed(chunks)
