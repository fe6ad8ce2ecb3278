"""Number, quantity and uri parameter normalisers.

Numbers and quantities are stored as closed ranges ``[low, high]`` (see
:mod:`.ranges`): a plain value is ``[v, v]``.  Number rows are ``(param, low,
high)``.  Quantity and its specialisations (Age, Count, Distance, Duration,
SimpleQuantity, MoneyQuantity) give ``(param, low, high, system, code, unit)``,
widened by a ``comparator``; Money gives ``(param, v, v,
"urn:iso:std:iso:4217", currency, None)``; a Range (``Condition.onset-age``,
``context-quantity``, ``RiskAssessment.probability``) its low..high with the
units of its ends; a SampledData the envelope of its samples.

uri: canonical values are indexed as written and, when they carry
``|version``, also without it, so ``_profile=http://x/P`` finds
``http://x/P|1.0`` while an exact versioned search still works.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.extract.ranges import (
    as_number,
    quantity_bounds,
    range_bounds,
    sampled_bounds,
)
from hygeia.fhir.search.rows import IndexRows

__all__ = [
    "CURRENCY_SYSTEM",
    "number_primitive",
    "number_range",
    "quantity_money",
    "quantity_quantity",
    "quantity_range",
    "quantity_sampled_data",
    "uri_canonical",
    "uri_primitive",
]

CURRENCY_SYSTEM = "urn:iso:std:iso:4217"

# FHIR types indexed as plain text, and the Quantity family (shared by the normalisers)
TEXT_TYPES = ("string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid")
QUANTITY_TYPES = ("Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity",
                  "MoneyQuantity")
NUMBER_TYPES = ("integer", "decimal", "positiveInt", "unsignedInt")


def _text(value: Any) -> str | None:
    return value if type(value) is str and value else None


def number_primitive(code: str, value: Any, rows: IndexRows) -> None:
    """integer, decimal, positiveInt, unsignedInt: the point ``[v, v]``."""
    number = as_number(value)
    if number is not None:
        rows.numbers.append((code, number, number))


def number_range(code: str, value: Any, rows: IndexRows) -> None:
    """Range under a number parameter (``RiskAssessment.probability``): units ignored."""
    bounds = range_bounds(value)
    if bounds is not None:
        rows.numbers.append((code, bounds[0], bounds[1]))


def quantity_quantity(code: str, value: Any, rows: IndexRows) -> None:
    """Quantity (and specialisations): skipped without a numeric value.

    A ``comparator`` widens the point into an open range (``<5`` is below 5).
    """
    bounds = quantity_bounds(value) if type(value) is dict else None
    if bounds is not None:
        rows.quantities.append((code, bounds[0], bounds[1], _text(value.get("system")),
                                _text(value.get("code")), _text(value.get("unit"))))


def quantity_money(code: str, value: Any, rows: IndexRows) -> None:
    """Money: the currency is an ISO 4217 code."""
    if type(value) is dict:
        number = as_number(value.get("value"))
        if number is not None:
            currency = _text(value.get("currency"))
            rows.quantities.append(
                (code, number, number, CURRENCY_SYSTEM if currency else None, currency, None)
            )


def quantity_range(code: str, value: Any, rows: IndexRows) -> None:
    """Range: low..high (inclusive, a missing end open), in the units of its ends."""
    bounds = range_bounds(value)
    if bounds is not None:
        low, high, units = bounds
        rows.quantities.append((code, low, high, _text(units.get("system")),
                                _text(units.get("code")), _text(units.get("unit"))))


def quantity_sampled_data(code: str, value: Any, rows: IndexRows) -> None:
    """SampledData: the envelope of its samples, in the units of its origin."""
    bounds = sampled_bounds(value)
    if bounds is not None:
        origin = value["origin"]
        rows.quantities.append((code, bounds[0], bounds[1], _text(origin.get("system")),
                                _text(origin.get("code")), _text(origin.get("unit"))))


def uri_primitive(code: str, value: Any, rows: IndexRows) -> None:
    """uri, url, oid, uuid (and text primitives under a uri parameter)."""
    if type(value) is str and value:
        rows.uris.append((code, value))


def uri_canonical(code: str, value: Any, rows: IndexRows) -> None:
    """canonical: as written, plus the URL without ``|version`` when there is one."""
    if type(value) is str and value:
        rows.uris.append((code, value))
        url, bar, _ = value.partition("|")
        if bar and url:
            rows.uris.append((code, url))
