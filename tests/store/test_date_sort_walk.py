"""A date sort's walk (``SqlSession._page_by_date``) gives exactly the plain sort's pages.

The walk bounds a ``_sort`` by date to the resources whose date reaches past the
N-th newest (oldest) index row of that parameter, and widens the bound until a
page is full.  These tests page through whole result sets both ways, on both
databases (the walk is switched on for SQLite here too, so its logic is held to
the plain sort on each), with ties, resources without a date, several dates per
resource (a Period and its end), and other clauses that keep only some of them.
"""

from __future__ import annotations

import random

import pytest

from hygeia.fhir.search.query import Query, parse_query
from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository, SearchPage, StoredVersion
from hygeia.store.sql import SqlSession

DAY = 86_400_000_000
COUNT = 300  # > the walk's first batch (64), so later pages need wider bounds


def observation(number: int, rng: random.Random) -> tuple[StoredVersion, IndexRows]:
    id = f"o{number:04d}"
    content = f'{{"resourceType":"Observation","id":"{id}"}}'.encode()
    dates = []
    if number % 17:  # every 17th has no date: it sorts last either way
        start = rng.randrange(40) * DAY  # few distinct days: many ties
        dates.append(("date", start, start + rng.choice((1, DAY, 30 * DAY))))
        if number % 5 == 0:  # a second date row: MIN(low) and MAX(high) pick across them
            dates.append(("date", start - 3 * DAY, start + 2 * DAY))
    tokens = [("code", "http://loinc.org", "8867-4" if number % 3 else "9279-1")]
    return (StoredVersion("Observation", id, 1, 1_000 + number, False, content, "POST", 0),
            IndexRows(tokens=tokens, dates=dates))


@pytest.fixture
def loaded(repository: Repository) -> Repository:
    rng = random.Random(20261207)
    with repository.transaction() as session:
        for number in range(COUNT):
            session.put(*observation(number, rng))
    return repository


def pages(repository: Repository, params: list[tuple[str, str]], walk: bool
          ) -> list[tuple[list[str], int | None]]:
    """Every page of the search, following next links: its ids and total."""
    found: list[tuple[list[str], int | None]] = []
    cursor = None
    while True:
        query = parse_query("Observation", params + ([("_cursor", cursor)] if cursor else []))
        with repository.reader() as session:
            session.date_sort_walk = walk  # type: ignore[attr-defined]
            session.date_walk_from = 50  # type: ignore[attr-defined]
            page = session.search(query)
        found.append(([match.id for match in page.matches], page.total))
        cursor = page.next_cursor
        if cursor is None:
            return found


@pytest.mark.parametrize(("params", "walks"), [
    ([("_sort", "-date"), ("_count", "10")], True),
    ([("_sort", "date"), ("_count", "7")], True),
    ([("_sort", "-date,_id"), ("_count", "25")], True),
    ([("code", "http://loinc.org|9279-1"), ("_sort", "-date"), ("_count", "5")], True),
    # the oldest dates are mostly before the date clause: no bound fills a page
    ([("code", "http://loinc.org|8867-4"), ("date", "ge1970-01-20"), ("_sort", "date"),
      ("_count", "40")], False),
    ([("_sort", "-date"), ("_count", "1000")], False),  # one page: no bound needed
    ([("_sort", "-date"), ("_count", "9"), ("_total", "none")], True),
    # its own date clause drives without a count first
    ([("date", "ge1970-01-05"), ("_sort", "-date"), ("_count", "9"), ("_total", "none")],
     False),
])
def test_walked_pages_equal_the_plain_sort(loaded: Repository, params: list[tuple[str, str]],
                                           walks: bool, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    bounded: list[int] = []  # pages the walk's bound answered
    plain_sort = SqlSession._sorted_page

    def sorted_page(self: SqlSession, query: Query, types: tuple[str, ...],
                    total: int | None, within: tuple[int, str, int] | None = None
                    ) -> SearchPage:
        page = plain_sort(self, query, types, total, within)
        if within is not None and page.next_cursor is not None:
            bounded.append(within[2])
        return page

    monkeypatch.setattr(SqlSession, "_sorted_page", sorted_page)
    walked = pages(loaded, params, walk=True)
    assert bool(bounded) == walks  # the walk answered pages (those with a next one)
    plain = pages(loaded, params, walk=False)
    assert walked == plain
    every = [id for page, _ in plain for id in page]
    assert len(every) == len(set(every))  # each match once


def test_few_matches_are_sorted_whole(loaded: Repository, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    """Under ``date_walk_from`` matches no bound is tried: its rounds would cost more
    than sorting the few matches."""
    bounds: list[int] = []
    monkeypatch.setattr(SqlSession, "_date_bound", lambda *args: bounds.append(1))
    query = parse_query("Observation", [("code", "http://loinc.org|9279-1"),
                                        ("_sort", "-date"), ("_count", "5")])
    with loaded.reader() as session:
        session.date_sort_walk = True  # type: ignore[attr-defined]
        assert len(session.search(query).matches) == 5
    assert bounds == []


def test_the_walk_is_on_for_postgresql_only(repository: Repository) -> None:
    with repository.reader() as session:
        assert session.date_sort_walk == (repository.dialect == "postgresql")  # type: ignore
