"""Date parameter normalisers: every value becomes a half-open microsecond range.

A date keeps its precision (``2020`` covers the whole year; see
:func:`hygeia.fhir.datetime.fhir_datetime_range`); a Period covers
``[start.low, end.high)`` with missing ends open (:data:`MIN_TIME` /
:data:`MAX_TIME`); a Timing contributes each event and its
``repeat.boundsPeriod``.  A ``string`` element under a date parameter
(``Immunization.occurrenceString``, ``CarePlan...scheduledString``,
``Procedure.performedString``) is free text: it is indexed when it happens to
be a valid FHIR date/dateTime and skipped otherwise ("spring 2019").  Other
values that do not parse are skipped too: stored data is validated, so that
only guards against data that bypassed validation.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.rows import MAX_TIME, MIN_TIME, IndexRows

__all__ = ["date_period", "date_primitive", "date_range", "date_timing"]


_SECOND = 1_000_000
_DAY = 86_400 * _SECOND
# The shape nearly every stored dateTime/instant has: full time, seconds and a zone.
_FULL = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(?:(Z)|([+-])(\d\d):(\d\d))"
)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@lru_cache(maxsize=16384)
def date_range(text: str) -> tuple[int, int] | None:
    """The [low, high) range of a FHIR date/dateTime/instant, or None when invalid.

    Same result as :func:`fhir_datetime_range` (a test checks it); full-precision
    dateTimes take an arithmetic fast path (datetime objects made new data 25%
    slower to index than data seen before), and results are cached because a
    patient's resources share a few hundred timestamps.

    >>> date_range("2020-01-01T00:00:00.5Z")
    (1577836800500000, 1577836800600000)
    """
    fast = _full_precision(text)
    if fast is not None:
        return fast
    try:
        return fhir_datetime_range(text)
    except (BadRequest, ValueError, OverflowError):
        return None


def _full_precision(text: str) -> tuple[int, int] | None:
    """``YYYY-MM-DDThh:mm:ss[.f](Z|+hh:mm)`` by arithmetic; None for anything else."""
    match = _FULL.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    if not (
        year >= 1
        and 1 <= month <= 12
        and 1 <= day <= _days_in(year, month)
        and hour < 24
        and minute < 60
        and second < 60
    ):
        return None
    offset = 0
    if match[8] is None:
        offset = (int(match[10]) * 60 + int(match[11])) * 60 * (1 if match[9] == "+" else -1)
        if offset >= 86_400 or offset <= -86_400:
            return None
    fraction = match[7]
    low = (
        _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset
    ) * _SECOND
    if fraction is None:
        return low, low + _SECOND
    digits = min(len(fraction), 6)
    low += int(fraction[:6].ljust(6, "0"))
    return low, low + 10 ** (6 - digits)


def _days_in(year: int, month: int) -> int:
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return _MONTH_DAYS[month - 1] + leap


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def date_primitive(code: str, value: Any, rows: IndexRows) -> None:
    """date, dateTime, instant, and a string holding one of them."""
    if type(value) is str:
        bounds = date_range(value)
        if bounds is not None:
            rows.dates.append((code, bounds[0], bounds[1]))


def date_period(code: str, value: Any, rows: IndexRows) -> None:
    """Period: open at a missing end; skipped when empty or when an end is invalid."""
    if type(value) is not dict:
        return
    start, end = value.get("start"), value.get("end")
    if start is None and end is None:
        return
    low, high = MIN_TIME, MAX_TIME
    if start is not None:
        bounds = date_range(start) if type(start) is str else None
        if bounds is None:
            return
        low = bounds[0]
    if end is not None:
        bounds = date_range(end) if type(end) is str else None
        if bounds is None:
            return
        high = bounds[1]
    rows.dates.append((code, low, high))


def date_timing(code: str, value: Any, rows: IndexRows) -> None:
    """Timing: each event, and the repeat's boundsPeriod."""
    if type(value) is not dict:
        return
    events = value.get("event")
    if type(events) is list:
        for event in events:
            date_primitive(code, event, rows)
    repeat = value.get("repeat")
    if type(repeat) is dict:
        date_period(code, repeat.get("boundsPeriod"), rows)
