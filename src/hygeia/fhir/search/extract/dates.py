"""Date parameter normalisers: every value becomes a half-open microsecond range.

A date keeps its precision (``2020`` covers the whole year; see
:func:`hygeia.fhir.datetime.fhir_datetime_range`); a Period covers
``[start.low, end.high)`` with missing ends open (:data:`MIN_TIME` /
:data:`MAX_TIME`); a Timing contributes each event and its
``repeat.boundsPeriod``.  Values that do not parse are skipped: stored data is
validated, so this only guards against data that bypassed validation.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.rows import MAX_TIME, MIN_TIME, IndexRows

__all__ = ["date_period", "date_primitive", "date_range", "date_timing"]


@lru_cache(maxsize=65536)
def date_range(text: str) -> tuple[int, int] | None:
    """The [low, high) range of a FHIR date/dateTime/instant, or None when invalid.

    Cached: a Synthea patient's resources share a few hundred timestamps, and
    parsing was the largest single cost of extraction before the cache.
    """
    try:
        return fhir_datetime_range(text)
    except (BadRequest, ValueError, OverflowError):
        return None


def date_primitive(code: str, value: Any, rows: IndexRows) -> None:
    """date, dateTime, instant."""
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
