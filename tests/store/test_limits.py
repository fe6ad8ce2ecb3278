"""Statement limits: a runaway query on either database stops as a 503 QueryTimeout."""

from __future__ import annotations

import base64
import time

import pytest

from hygeia.fhir.outcome import BadRequest
from hygeia.store import Repository
from hygeia.store.cursor import decode_cursor, encode_cursor
from hygeia.store.limits import QueryTimeout, StatementLimits, statement_limits

# a recursive count that runs for many seconds on either database
_RUNAWAY = ("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
            "WHERE n < 100000000) SELECT count(*) FROM s")


def test_a_read_past_its_limit_is_stopped(repository: Repository) -> None:
    started = time.monotonic()
    with statement_limits(StatementLimits(read=0.3)), pytest.raises(QueryTimeout) as caught, \
            repository.reader() as session:
        session.execute(_RUNAWAY).fetchall()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2
    assert caught.value.status == 503 and caught.value.issues[0].code == "timeout"
    with repository.reader() as session:  # the connection is usable again, unbounded
        assert session.execute("SELECT 1").fetchone()[0] == 1  # type: ignore[attr-defined]


def test_a_write_has_its_own_limit(repository: Repository) -> None:
    with statement_limits(StatementLimits(read=0.2, write=0.3)), \
            pytest.raises(QueryTimeout), repository.transaction() as session:
        session.execute(_RUNAWAY).fetchall()  # type: ignore[attr-defined]


def test_without_limits_quick_statements_are_untouched(repository: Repository) -> None:
    with statement_limits(StatementLimits(read=5, write=5)), repository.reader() as session:
        assert session.execute("SELECT 2").fetchone()[0] == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("raw, kinds", [
    (b'["n", "x"]', ("key",)), (b'["n", 9223372036854775808]', ("key",)),
    (b'["n", 1.5]', ("key",)), (b'["n", true]', ("number",)), (b'["n", 1e999]', ("number",)),
    (b'["n", 1]', ("text",)), (b'["n", "a\\u0000"]', ("text",)), (b'["n", null]', ("text",)),
    (b'["x", 1]', ("key",)), (b'["n", 1, 2]', ("key",))])
def test_cursors_with_keys_of_the_wrong_kind_are_refused(raw: bytes, kinds: tuple[str, ...]
                                                         ) -> None:
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(BadRequest):
        decode_cursor(cursor, kinds)


def test_issued_cursors_decode() -> None:
    assert decode_cursor(encode_cursor("p", [5, 2.5, "Patient"]), ("key", "number", "text")) \
        == ("p", [5, 2.5, "Patient"])
