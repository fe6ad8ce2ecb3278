"""The store primitives the bulk loader uses: ``Session.heads`` and prepared index rows.

Both backends must give the same answers, and a version put with
``PreparedRows`` must be indexed exactly like one put with its ``IndexRows``.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.query import parse_query
from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository, StoredVersion
from hygeia.store.base import Head
from hygeia.store.schema import INDEX_TABLES
from hygeia.store.sql import prepare_rows

ROWS = IndexRows(
    strings=[("family", "smith", "Smith")],
    tokens=[("identifier", "urn:s", "1"), ("gender", "http://hl7.org/fhir/gender", "male")],
    token_texts=[("identifier", "card"), ("identifier", "extra text")],
    references=[("general-practitioner", "Practitioner", "dr", None, None)],
    dates=[("birthdate", 0, 86_400_000_000)],
    composites=[("code-value-quantity", 0, 0, ("http://loinc.org", "8480-6")),
                ("code-value-quantity", 0, 1, (120.0, 120.0, "http://unitsofmeasure.org",
                                               "mm[Hg]", "mmHg"))],
)


def version(id: str, number: int, *, deleted: bool = False, type: str = "Patient"
            ) -> StoredVersion:
    content = None if deleted else f'{{"resourceType":"{type}","id":"{id}"}}'.encode()
    return StoredVersion(type, id, number, 1_000 + number, deleted, content,
                         "DELETE" if deleted else "PUT", 0)


def owner_rows(repository: Repository, id: str) -> list[tuple[Any, ...]]:
    """The index rows of Patient ``id``, without the internal key."""
    found = []
    with repository.reader() as session:
        for table, columns in INDEX_TABLES.items():
            rows = session.execute(  # type: ignore[attr-defined]
                f"SELECT t.h_param, {', '.join(f't.{c}' for c in columns)} FROM {table} t "
                "JOIN resource r "
                "ON r.pk = t.res_pk WHERE r.res_id = ?", (id,)).fetchall()
            found.extend((table, *row) for row in rows)
    return sorted(found, key=repr)


def test_prepared_rows_store_what_index_rows_store(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("plain", 1), ROWS)
        session.put(version("prepared", 1), prepare_rows("Patient", ROWS))
    plain = owner_rows(repository, "plain")
    assert len(plain) == 7  # 3 token rows (a text rides on one, the other gets its own), 4 more
    assert owner_rows(repository, "prepared") == plain
    with repository.reader() as session:
        query = parse_query("Patient", [("identifier", "urn:s|1")])
        assert sorted(v.id for v in session.search(query).matches) == ["plain", "prepared"]


def test_prepared_rows_replace_the_previous_versions_rows(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("p", 1), ROWS)
    with repository.transaction() as session:
        session.put(version("p", 2), prepare_rows("Patient", IndexRows(
            tokens=[("identifier", "urn:s", "2")])))
    rows = owner_rows(repository, "p")
    assert [row[0] for row in rows] == ["token_index"] and rows[0][4] == "2"


def test_heads_reports_current_versions_of_the_keys_that_exist(repository: Repository) -> None:
    with repository.transaction() as session:
        session.put(version("a", 1), IndexRows())
        session.put(version("a", 2), IndexRows())
        session.put(version("gone", 1), IndexRows())
        session.put(version("gone", 2, deleted=True), IndexRows())
        session.put(version("o", 1, type="Observation"), IndexRows())
    keys = [("Patient", "a"), ("Patient", "gone"), ("Patient", "o"), ("Observation", "o"),
            ("Patient", "never")]
    with repository.transaction() as session:
        heads = session.heads(keys, for_update=True)
        session.put(version("new", 1), IndexRows())
        assert session.heads([("Patient", "new")]) == {("Patient", "new"): Head(1, 1_001, False)}
    assert heads == {("Patient", "a"): Head(2, 1_002, False),
                     ("Patient", "gone"): Head(2, 1_002, True),
                     ("Observation", "o"): Head(1, 1_001, False)}


def test_heads_of_many_keys(repository: Repository) -> None:
    with repository.transaction() as session:
        for n in range(0, 2500, 2):
            session.put(version(f"m{n}", 1), IndexRows())
    with repository.reader() as session:
        heads = session.heads([("Patient", f"m{n}") for n in range(2500)])
    assert len(heads) == 1250 and ("Patient", "m2498") in heads
