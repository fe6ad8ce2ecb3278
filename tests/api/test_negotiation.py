"""``check_accept``: a non-JSON ``_format`` is a 406 unless the operation asked for
produces it itself (``Operation.formats``), whatever ``Accept`` says then."""

from __future__ import annotations

import pytest

from hygeia.api.negotiation import check_accept, is_json_format
from hygeia.fhir.outcome import NotAcceptable

OWN = frozenset({"csv", "text/csv", "parquet"})


def test_an_operations_own_formats_pass() -> None:
    check_accept(None, "csv", OWN)
    check_accept("application/fhir+xml", "TEXT/CSV ", OWN)
    check_accept(None, "json", OWN)


def test_other_formats_are_refused_naming_the_choices() -> None:
    with pytest.raises(NotAcceptable, match="use json, csv or parquet"):
        check_accept(None, "xml", OWN)
    with pytest.raises(NotAcceptable, match=r"use json\.$"):
        check_accept(None, "csv")


def test_json_names() -> None:
    assert is_json_format("application/fhir+json") and is_json_format(" JSON")
    assert not is_json_format("csv")
