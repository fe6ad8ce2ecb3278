from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.matcher import matches
from hygeia.fhir.search.query import (
    IdClause,
    TokenClause,
    TokenValue,
    parse_criteria,
    parse_query,
    split_escaped,
)


def test_token_forms() -> None:
    query = parse_query("Patient", [("identifier", "s|c,|c2,s3|,c4")])
    clause = query.clauses[0]
    assert isinstance(clause, TokenClause)
    assert clause.values == (TokenValue("s", "c"), TokenValue("", "c2"), TokenValue("s3", None),
                             TokenValue(None, "c4"))


def test_escaping() -> None:
    assert split_escaped(r"a\,b,c\|d", ",") == ["a,b", "c|d"]
    query = parse_query("Patient", [("identifier", r"urn:x|a\|b")])
    assert query.clauses[0].values == (TokenValue("urn:x", "a|b"),)  # type: ignore[union-attr]


def test_and_of_repeated_parameters() -> None:
    query = parse_query("Patient", [("_id", "a,b"), ("_id", "b")])
    assert query.clauses == [IdClause(("a", "b")), IdClause(("b",))]
    assert matches(query, {"resourceType": "Patient", "id": "b"})
    assert not matches(query, {"resourceType": "Patient", "id": "a"})


def test_unknown_parameters_ignored_or_strict() -> None:
    assert parse_query("Patient", [("name", "x")]).ignored
    with pytest.raises(BadRequest, match="not supported"):
        parse_query("Patient", [("name", "x")], strict=True)


def test_criteria_must_name_a_parameter() -> None:
    with pytest.raises(BadRequest):
        parse_criteria("Patient", "")
    with pytest.raises(BadRequest):
        parse_criteria("Patient", "_count=1")


def test_matcher_token_semantics() -> None:
    resource = {"resourceType": "Patient", "identifier": [{"system": "s", "value": "v"},
                                                          {"value": "nosys"}]}
    assert matches(parse_criteria("Patient", "identifier=s|v"), resource)
    assert matches(parse_criteria("Patient", "identifier=v"), resource)
    assert matches(parse_criteria("Patient", "identifier=s|"), resource)
    assert matches(parse_criteria("Patient", "identifier=|nosys"), resource)
    assert not matches(parse_criteria("Patient", "identifier=|v"), resource)
    assert not matches(parse_criteria("Patient", "identifier=other|v"), resource)


@given(st.text(max_size=30))
def test_token_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(BadRequest):
        parse_query("Patient", [("identifier", text)])
