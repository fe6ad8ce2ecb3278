"""PostgreSQL's combined insert of a small flush: the same rows as table by table."""

from __future__ import annotations

import math
from typing import Any

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository, StoredVersion
from hygeia.store.postgres.repository import COMBINED_TABLES, combined_rows
from hygeia.store.schema import INDEX_TABLES

# values JSON must carry exactly: shortest-form floats, extreme finite floats, large
# integers, text with quotes, backslashes, escapes and characters beyond the BMP
AWKWARD = IndexRows(
    strings=[("name", "zoë \"q\" \\ \t", "Zoë \"Q\" \\ \t"), ("name", "😀", "😀")],
    tokens=[("identifier", "urn:a", "1"), ("identifier", None, "x\u2028y"),
            ("active", None, "true")],
    token_texts=[("identifier", "text one"), ("identifier", "text two"),
                 ("code", "left over")],
    references=[("general-practitioner", "Practitioner", "p1", None, None),
                ("link", None, None, "http://x/y", "3")],
    dates=[("birthdate", -(2 ** 62), 2 ** 62 - 1), ("death-date", 1_700_000_000_123_456,
                                                     1_700_000_000_123_457)],
    numbers=[("length", 0.1, 0.30000000000000004), ("length", -1.7976931348623157e308,
                                                    5e-324), ("length", 7, 7)],
    quantities=[("value-quantity", 1e-300, 1e300, "http://unitsofmeasure.org", "mm[Hg]",
                 "mm Hg"), ("value-quantity", 72, 72, None, None, None)],
    uris=[("url", "http://example.org/ä")],
    composites=[("code-value-quantity", 0, 0, ("http://loinc.org", "8480-6")),
                ("code-value-quantity", 0, 1, (120.5, 120.5, "u", "mm[Hg]", "mmHg"))],
)


def version(id: str, number: int) -> StoredVersion:
    content = f'{{"resourceType":"Patient","id":"{id}"}}'.encode()
    return StoredVersion("Patient", id, number, 1_000 + number, False, content, "PUT", 0)


def index_rows(repository: Repository) -> dict[str, list[tuple[Any, ...]]]:
    with repository.reader() as session:
        execute = session.execute  # type: ignore[attr-defined]
        return {table: sorted(map(tuple, execute(f"SELECT * FROM {table}").fetchall()),
                              key=repr) for table in INDEX_TABLES}


def test_a_small_flush_stores_what_table_by_table_inserts_store(
        postgres_repository: Repository) -> None:
    with postgres_repository.transaction() as session:
        session.put(version("a", 1), AWKWARD)
        session.put(version("b", 1), IndexRows(tokens=[("identifier", "s", "b")]))
    combined = index_rows(postgres_repository)
    assert sum(map(len, combined.values())) == 18
    with postgres_repository.transaction() as session:  # reindex: table by table
        assert session.reindex([("Patient", "a"), ("Patient", "b")],
                               lambda resource: AWKWARD if resource["id"] == "a"
                               else IndexRows(tokens=[("identifier", "s", "b")])) == 2
    assert index_rows(postgres_repository) == combined
    with postgres_repository.reader() as session:
        row = session.execute(  # type: ignore[attr-defined]
            "SELECT low, high FROM number_index ORDER BY low LIMIT 1").fetchone()
    assert tuple(row) == (-1.7976931348623157e308, 5e-324)


def test_the_awkward_rows_do_go_by_json() -> None:
    """(else the test above compared the table-by-table path with itself)"""
    from hygeia.store.sql import prepare_rows

    tables = prepare_rows("Patient", AWKWARD).tables
    inserts = [(table, [(1, *row) for row in tables[position]])
               for position, table in enumerate(INDEX_TABLES)]
    assert combined_rows(inserts) is not None


def test_values_json_would_change_go_table_by_table(postgres_repository: Repository) -> None:
    for rows in ([(1, 2, math.nan, 1.0)], [(1, 2, 1.0, math.inf)], [(1, 2, 2 ** 70, 1.0)],
                 [(1, 2, True, 1.0)]):
        assert combined_rows([("number_index", rows)]) is None
    assert combined_rows([("uri_index", [(1, 2, "a\x00b")])]) is None
    assert combined_rows([("uri_index", [(1, 2, 1.5)])]) is None  # 1.5 would be text "1.5"
    assert combined_rows([("uri_index", [(1, 2, "u")])]) is not None
    assert set(COMBINED_TABLES) == {"resource", *INDEX_TABLES}
    odd = IndexRows(numbers=[("length", math.nan, math.inf), ("length", 2 ** 70, 2 ** 70)],
                    uris=[("url", "u")])
    with postgres_repository.transaction() as session:
        session.put(version("n", 1), odd)
    with postgres_repository.reader() as session:
        rows = session.execute(  # type: ignore[attr-defined]
            "SELECT low, high FROM number_index ORDER BY high").fetchall()
    assert float(rows[0][0]) == 2.0 ** 70
    assert math.isnan(rows[1][0]) and rows[1][1] == math.inf


# texts a hand-made encoding could misread: NULL, braces, commas, blanks at either end,
# backslash escapes (tab, newline, other control characters)
LITERAL_TRAPS = IndexRows(
    strings=[("name", "NULL", "null"), ("name", "", " "), ("name", " a, b ", "{x}"),
             ("name", "tab\there", "new\nline\r"), ("name", "\x01\x1f", "\\n \\\\ \\\"")],
    uris=[("url", "{}"), ("url", "\"quoted\"")],
    tokens=[("identifier", "NULL", None), ("identifier", None, "{,}")],
)


def test_texts_an_encoding_could_misread_are_stored_as_given(
        postgres_repository: Repository) -> None:
    from hygeia.store.sql import prepare_rows

    tables = prepare_rows("Patient", LITERAL_TRAPS).tables
    assert combined_rows([(table, [(1, *row) for row in tables[position]])
                          for position, table in enumerate(INDEX_TABLES)]) is not None
    with postgres_repository.transaction() as session:
        session.put(version("t", 1), LITERAL_TRAPS)
    combined = index_rows(postgres_repository)
    assert sum(map(len, combined.values())) == 9
    with postgres_repository.transaction() as session:  # reindex: table by table
        assert session.reindex([("Patient", "t")], lambda resource: LITERAL_TRAPS) == 1
    assert index_rows(postgres_repository) == combined
    with postgres_repository.reader() as session:
        exact = {row[0] for row in session.execute(  # type: ignore[attr-defined]
            "SELECT exact FROM string_index").fetchall()}
    assert exact == {"null", " ", "{x}", "new\nline\r", "\\n \\\\ \\\""}
