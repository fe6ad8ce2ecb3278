"""The stored range of a number or quantity value: ``[low, high]``, closed, floats.

search.html compares ranges: a search value's precision gives it a range, and
a stored value may be one too.  So every number and quantity row stores
``low`` and ``high``:

=========================================  ==========================================
value                                      stored ``(low, high)``
=========================================  ==========================================
``5`` (decimal, integer, Quantity 5 mg)    ``(5.0, 5.0)``: a point, as exact as written
Quantity ``comparator`` ``<`` 5            ``(MIN_NUMBER, 5.0 - ulp)``: below 5, open
Quantity ``comparator`` ``<=`` 5           ``(MIN_NUMBER, 5.0)``
Quantity ``comparator`` ``>=`` / ``>`` 5   ``(5.0, MAX_NUMBER)`` / ``(5.0 + ulp, MAX_NUMBER)``
Range low 2 high 4 (ends inclusive)        ``(2.0, 4.0)``; a missing end is open
SampledData                                the envelope of its samples (see below)
=========================================  ==========================================

Open ends are :data:`~hygeia.fhir.search.rows.MIN_NUMBER` /
:data:`~hygeia.fhir.search.rows.MAX_NUMBER` (the largest finite floats, not
infinities: the sort keys of a range end up in paging cursors, which are JSON).
An exclusive end (``<`` and ``>``) is the neighbouring float
(:func:`math.nextafter`), so ``<5`` never matches ``ge5`` while ``<=5`` does,
without a column saying which ends are open.  A value whose bounds cannot be
told (no numeric value, an unknown comparator, ``low > high``) gives None and
no row.

SampledData (``Observation.value-quantity`` reaches ``valueSampledData`` in
R4) is indexed as one range, the envelope of its decoded samples
``origin.value + factor * d``, in ``origin``'s units: a search for ``gt100``
finds a series that goes above 100, ``eq100`` one that stays within [99.5,
100.5).  ``L`` (below ``lowerLimit``) opens the low end and ``U`` (above
``upperLimit``) the high end; ``E`` (error) is skipped.  One row per series
keeps an ECG of thousands of points as cheap to index as a single value.  search.html says nothing
about SampledData; this is Hygeia's reading, documented in the search guide.
"""

from __future__ import annotations

import math
from typing import Any

from hygeia.fhir.search.rows import MAX_NUMBER, MIN_NUMBER

__all__ = ["as_number", "comparator_bounds", "quantity_bounds", "range_bounds",
           "sampled_bounds"]

Bounds = tuple[float, float]


def as_number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (booleans included) or overflow."""
    if type(value) is int or type(value) is float:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def quantity_bounds(value: dict[str, Any]) -> Bounds | None:
    """A Quantity's ``[low, high]``: its value as a point, widened by its comparator."""
    number = as_number(value.get("value"))
    if number is None:
        return None
    comparator = value.get("comparator")
    if comparator is None:
        return number, number
    return comparator_bounds(number, comparator)


def comparator_bounds(number: float, comparator: Any) -> Bounds | None:
    """The range a Quantity's ``comparator`` makes of its value (called only when present)."""
    if comparator == "<":
        return MIN_NUMBER, math.nextafter(number, -math.inf)
    if comparator == "<=":
        return MIN_NUMBER, number
    if comparator == ">=":
        return number, MAX_NUMBER
    if comparator == ">":
        return math.nextafter(number, math.inf), MAX_NUMBER
    return None


def range_bounds(value: Any) -> tuple[float, float, dict[str, Any]] | None:
    """A Range's inclusive ``[low, high]`` and the Quantity to take units from.

    Units come from whichever end has a value (low first).  When both ends
    carry a unit code and the codes differ, the range cannot be compared as
    one quantity and gives None.

    >>> range_bounds({"low": {"value": 30, "code": "a"}, "high": {"value": 50}})[:2]
    (30.0, 50.0)
    >>> range_bounds({"high": {"value": 10}})[:2] == (MIN_NUMBER, 10.0)
    True
    """
    if type(value) is not dict:
        return None
    start: Any = value.get("low")
    end: Any = value.get("high")
    low = as_number(start.get("value")) if type(start) is dict else None
    high = as_number(end.get("value")) if type(end) is dict else None
    if low is None and high is None:
        return None
    if low is not None and high is not None:
        if low > high or not _same_units(start, end):
            return None
        return low, high, start
    if low is not None:
        return low, MAX_NUMBER, start
    assert high is not None
    return MIN_NUMBER, high, end


def _same_units(first: dict[str, Any], second: dict[str, Any]) -> bool:
    for key in ("system", "code"):
        a, b = first.get(key), second.get(key)
        if a is not None and b is not None and a != b:
            return False
    return True


def sampled_bounds(value: Any) -> Bounds | None:
    """The envelope ``[min, max]`` of a SampledData's samples; None without any sample.

    An ``L`` sample lies below ``lowerLimit``, and so below every measured
    sample (those were detectable): it opens the low end, and bounds the high
    end only by the limit, when one is stated.  ``U`` mirrors it.

    >>> sampled_bounds({"origin": {"value": 100}, "factor": 2, "data": "1 5 -3 E"})
    (94.0, 110.0)
    """
    if type(value) is not dict:
        return None
    origin, data = value.get("origin"), value.get("data")
    base = as_number(origin.get("value")) if type(origin) is dict else None
    factor = as_number(value.get("factor", 1))
    if base is None or factor is None or type(data) is not str:
        return None
    items = data.split()
    points = [point for item in items if (point := _sample(item, base, factor)) is not None]
    below, above = "L" in items, "U" in items
    if not points and not below and not above:
        return None
    lows = points + _stated(value.get("upperLimit"), above)
    highs = points + _stated(value.get("lowerLimit"), below)
    low = MIN_NUMBER if below or not lows else min(lows)
    high = MAX_NUMBER if above or not highs else max(highs)
    return low, high


def _stated(limit: Any, used: bool) -> list[float]:
    """A detection limit (in the samples' decoded units) that bounds an L or U sample."""
    number = as_number(limit) if used else None
    return [] if number is None else [number]


def _sample(item: str, base: float, factor: float) -> float | None:
    """One decoded data point; None for ``E``, ``L``, ``U`` and anything not a finite decimal."""
    if item in ("E", "L", "U"):
        return None
    try:
        point = base + factor * float(item)
    except ValueError:
        return None
    return point if math.isfinite(point) else None
