"""The router names an unknown operation as an operation, wherever it is asked for."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import NotFound
from hygeia.server.router import parse_route


@pytest.mark.parametrize(("path", "sentence", "expression"), [
    ("Observation/$lastn", "The operation $lastn is not supported on Observation.",
     "Observation"),
    ("Patient/7/$foo", "The operation $foo is not supported on Patient/[id].", "Patient"),
    ("$bar", "The operation $bar is not supported on [base] (the system level).", None),
    ("Group/$export", "$export is offered on Patient and Group/[id], not Group.", None),
])
def test_unknown_operation_is_a_404_naming_it(path: str, sentence: str,
                                              expression: str | None) -> None:
    with pytest.raises(NotFound) as raised:
        parse_route("GET", path, [])
    issue = raised.value.issues[0]
    assert issue.code == "not-supported" and issue.diagnostics.startswith(sentence)
    assert issue.expression == expression


def test_known_operations_still_route() -> None:
    assert parse_route("POST", "Observation/$validate", []).interaction == "validate"
    assert parse_route("GET", "Patient/7/$everything", []).interaction == "everything"
    assert parse_route("POST", "$reindex", []).interaction == "reindex"


def test_a_misplaced_operation_says_where_it_is_offered() -> None:
    with pytest.raises(NotFound) as raised:
        parse_route("GET", "Patient/$everything", [])
    assert raised.value.issues[0].diagnostics.endswith("It is offered on Patient/[id].")


def test_a_hostile_operation_name_is_shown_short() -> None:
    with pytest.raises(NotFound) as raised:
        parse_route("GET", "Observation/$" + "x\x00" * 5000, [])
    assert len(raised.value.issues[0].diagnostics) < 200
