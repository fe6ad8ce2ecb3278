from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.search.extract.dates import date_period, date_range, date_timing
from hygeia.fhir.search.rows import MAX_TIME, MIN_TIME, IndexRows

DAY = 86_400_000_000
JAN_2020 = 1_577_836_800_000_000


def test_date_range_by_precision() -> None:
    assert date_range("2020") == (JAN_2020, 1_609_459_200_000_000)
    assert date_range("2020-01-01") == (JAN_2020, JAN_2020 + DAY)
    assert date_range("2020-01-01T01:00:00+01:00") == (JAN_2020, JAN_2020 + 1_000_000)
    assert date_range("2020-01-01T00:00:00.25Z") == (JAN_2020 + 250_000, JAN_2020 + 260_000)
    assert date_range("2020-02-30") is None
    assert date_range("yesterday") is None


@given(
    st.datetimes(),
    st.integers(-14 * 60, 14 * 60),
    st.sampled_from(["", ".5", ".123456", ".1234567"]),
)
def test_fast_path_agrees_with_the_datetime_module(
    moment: datetime, offset: int, fraction: str
) -> None:
    sign = "+" if offset > 0 else "-"
    zone = "Z" if offset == 0 else f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}{fraction}{zone}"
    assert date_range(text) == fhir_datetime_range(text)


def test_period_open_ends_and_invalid_ends() -> None:
    rows = IndexRows()
    date_period("p", {"start": "2020-01-01"}, rows)
    date_period("p", {"end": "2020-01-01"}, rows)
    date_period("p", {}, rows)
    date_period("p", {"start": "bad", "end": "2020"}, rows)
    assert rows.dates == [("p", JAN_2020, MAX_TIME), ("p", MIN_TIME, JAN_2020 + DAY)]


def test_timing_events_and_bounds() -> None:
    rows = IndexRows()
    date_timing(
        "t",
        {
            "event": ["2020-01-01", 3],
            "repeat": {"boundsPeriod": {"start": "2020-01-02", "end": "2020-01-02"}},
        },
        rows,
    )
    assert rows.dates == [
        ("t", JAN_2020, JAN_2020 + DAY),
        ("t", JAN_2020 + DAY, JAN_2020 + 2 * DAY),
    ]
