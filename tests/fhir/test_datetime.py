from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygeia.fhir.datetime import fhir_datetime_range, format_instant
from hygeia.fhir.outcome import BadRequest


@pytest.mark.parametrize(("text", "low", "high"), [
    ("2020", "2020-01-01T00:00:00.000000Z", "2021-01-01T00:00:00.000000Z"),
    ("2020-12", "2020-12-01T00:00:00.000000Z", "2021-01-01T00:00:00.000000Z"),
    ("2020-02-28", "2020-02-28T00:00:00.000000Z", "2020-02-29T00:00:00.000000Z"),
    ("2020-02-28T10:00+02:00", "2020-02-28T08:00:00.000000Z", "2020-02-28T08:01:00.000000Z"),
    ("2020-02-28T10:00:05Z", "2020-02-28T10:00:05.000000Z", "2020-02-28T10:00:06.000000Z"),
    ("2020-02-28T10:00:05.25Z", "2020-02-28T10:00:05.250000Z", "2020-02-28T10:00:05.260000Z"),
])
def test_ranges_respect_precision(text: str, low: str, high: str) -> None:
    start, end = fhir_datetime_range(text)
    assert (format_instant(start), format_instant(end)) == (low, high)


@pytest.mark.parametrize("text", ["", "20", "2020-13", "2020-02-30", "yesterday", "2020-01-01T"])
def test_bad_values_are_clear_errors(text: str) -> None:
    with pytest.raises(BadRequest, match="_since"):
        fhir_datetime_range(text, name="_since")


@given(st.text(max_size=40))
def test_parser_never_crashes(text: str) -> None:
    try:
        low, high = fhir_datetime_range(text)
    except BadRequest:
        return
    assert low < high
