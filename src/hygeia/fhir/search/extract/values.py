"""Number, quantity and uri parameter normalisers.

Quantities: Quantity and its specialisations (Age, Count, Distance, Duration,
SimpleQuantity, MoneyQuantity) give ``(param, value, system, code, unit)``;
Money gives ``(param, value, "urn:iso:std:iso:4217", currency, None)``.  Range
values (``Condition.onset.as(Range)``, ``context-quantity``) are not indexed
yet: matching a search value against a range needs a range table.

uri: canonical values are indexed as written and, when they carry
``|version``, also without it, so ``_profile=http://x/P`` finds
``http://x/P|1.0`` while an exact versioned search still works.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.rows import IndexRows

__all__ = [
    "CURRENCY_SYSTEM",
    "number_primitive",
    "quantity_money",
    "quantity_quantity",
    "uri_canonical",
    "uri_primitive",
]

CURRENCY_SYSTEM = "urn:iso:std:iso:4217"

# FHIR types indexed as plain text, and the Quantity family (shared by the normalisers)
TEXT_TYPES = ("string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid")
QUANTITY_TYPES = ("Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity",
                  "MoneyQuantity")


def _number(value: Any) -> float | None:
    if type(value) is int or type(value) is float:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _text(value: Any) -> str | None:
    return value if type(value) is str and value else None


def number_primitive(code: str, value: Any, rows: IndexRows) -> None:
    """integer, decimal, positiveInt, unsignedInt."""
    number = _number(value)
    if number is not None:
        rows.numbers.append((code, number))


def quantity_quantity(code: str, value: Any, rows: IndexRows) -> None:
    """Quantity (and specialisations): skipped without a numeric value."""
    if type(value) is dict:
        number = _number(value.get("value"))
        if number is not None:
            rows.quantities.append(
                (
                    code,
                    number,
                    _text(value.get("system")),
                    _text(value.get("code")),
                    _text(value.get("unit")),
                )
            )


def quantity_money(code: str, value: Any, rows: IndexRows) -> None:
    """Money: the currency is an ISO 4217 code."""
    if type(value) is dict:
        number = _number(value.get("value"))
        if number is not None:
            currency = _text(value.get("currency"))
            rows.quantities.append(
                (code, number, CURRENCY_SYSTEM if currency else None, currency, None)
            )


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
