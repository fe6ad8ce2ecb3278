"""SearchLimits: every bound refuses with 400 just past it and allows what is at it."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.query import SearchLimits, parse_criteria, parse_query
from hygeia.fhir.search.results import non_negative

LIMITS = SearchLimits(values=3, chain_depth=2, parameters=4)


def refused(params: list[tuple[str, str]]) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse_query("Patient", params, limits=LIMITS)
    return caught.value


def test_values_per_parameter() -> None:
    assert len(parse_query("Patient", [("family", "a,b,c")], limits=LIMITS).clauses) == 1
    error = refused([("family", "a,b,c,d")])
    assert error.issues[0].expression == "family" and error.issues[0].code == "too-costly"
    # escaped commas are part of one value, not separators
    assert parse_query("Patient", [("family", r"a\,b\,c\,d")], limits=LIMITS).clauses


def test_chain_depth_counts_chains_and_has() -> None:
    parse_query("Patient", [("link.link.family", "x")], limits=LIMITS)
    assert refused([("link.link.link.family", "x")]).issues[0].expression == \
        "link.link.link.family"
    assert refused([("_has:Patient:link:_has:Patient:link:link.family", "x")])


def test_parameter_count() -> None:
    parse_query("Patient", [("family", "x")] * 4, limits=LIMITS)
    assert refused([("family", "x")] * 5).issues[0].code == "too-costly"


@pytest.mark.parametrize("text", ["\x00", "a\x07", "\x1f", "\x0b"])
def test_control_characters_in_names_and_values(text: str) -> None:
    assert refused([("family", text)]).issues[0].expression == "family"
    assert refused([("family" + text, "x")])


def test_tab_cr_lf_are_allowed_in_values() -> None:
    assert parse_query("Patient", [("family", "a\tb\r\n")], limits=LIMITS).clauses


def test_server_queries_are_unbounded_and_criteria_are_bounded() -> None:
    ids = ",".join(str(i) for i in range(5000))
    assert parse_query("Patient", [("_id", ids)]).clauses
    with pytest.raises(BadRequest):
        parse_criteria("Patient", f"_id={ids}")


@pytest.mark.parametrize("value", ["9" * 19, "9" * 5000, "\u00b2", "\u0663", "-1", "", "1.0"])
def test_integers_are_ascii_digits_of_bounded_length(value: str) -> None:
    with pytest.raises(BadRequest):
        non_negative("_count", value)


def test_integers_up_to_18_digits_parse() -> None:
    assert non_negative("_count", "9" * 18) == 10 ** 18 - 1
