"""Composite components: a value's rows *without* the parameter code, and nothing else.

A composite row stores each component's row minus its param
(``(system, code)`` for a token, ``(low, high, system, code, unit)`` for a
quantity, ``(low, high)`` for a number or a date...).  These functions produce
exactly that, without the modifier rows (``:text``, ``:of-type``,
``:identifier``) the full normalisers add: a third of an Observation's
extraction time went into composites before they had their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hygeia.fhir.search.extract.dates import date_range
from hygeia.fhir.search.extract.ranges import (
    as_number,
    quantity_bounds,
    range_bounds,
    sampled_bounds,
)
from hygeia.fhir.search.extract.references import parse_reference
from hygeia.fhir.search.extract.text import normalise_text
from hygeia.fhir.search.extract.values import (
    CURRENCY_SYSTEM,
    NUMBER_TYPES,
    QUANTITY_TYPES,
    TEXT_TYPES,
)
from hygeia.fhir.search.rows import MAX_TIME, MIN_TIME
from hygeia.fhir.spec import is_resource_type

__all__ = ["Tails", "tails_for"]

Tails = Callable[[Any], list[tuple[Any, ...]]]


def _text(value: Any) -> str | None:
    return value if type(value) is str and value else None


def _coding(value: Any) -> list[tuple[Any, ...]]:
    if type(value) is not dict:
        return []
    system, code = _text(value.get("system")), _text(value.get("code"))
    return [(system, code)] if system is not None or code is not None else []


def _codeable_concept(value: Any) -> list[tuple[Any, ...]]:
    codings = value.get("coding") if type(value) is dict else None
    if type(codings) is not list:
        return []
    return [tail for coding in codings for tail in _coding(coding)]


def _identifier(value: Any) -> list[tuple[Any, ...]]:
    if type(value) is not dict:
        return []
    system, ident = _text(value.get("system")), _text(value.get("value"))
    return [(system, ident)] if system is not None or ident is not None else []


def _code(value: Any) -> list[tuple[Any, ...]]:
    return [(None, value)] if _text(value) is not None else []


def _boolean(value: Any) -> list[tuple[Any, ...]]:
    return [(None, "true" if value else "false")] if type(value) is bool else []


def _contact_point(value: Any) -> list[tuple[Any, ...]]:
    return _code(value.get("value")) if type(value) is dict else []


def _units(quantity: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    return _text(quantity.get("system")), _text(quantity.get("code")), _text(quantity.get("unit"))


def _quantity(value: Any) -> list[tuple[Any, ...]]:
    """A point, or the open range of a comparator (the plain value inlined: it is hot)."""
    number = as_number(value.get("value")) if type(value) is dict else None
    if number is None:
        return []
    if value.get("comparator") is None:
        return [(number, number, _text(value.get("system")), _text(value.get("code")),
                 _text(value.get("unit")))]
    bounds = quantity_bounds(value)
    return [(*bounds, *_units(value))] if bounds is not None else []


def _money(value: Any) -> list[tuple[Any, ...]]:
    number = as_number(value.get("value")) if type(value) is dict else None
    if number is None:
        return []
    currency = _text(value.get("currency"))
    return [(number, number, CURRENCY_SYSTEM if currency else None, currency, None)]


def _quantity_range(value: Any) -> list[tuple[Any, ...]]:
    bounds = range_bounds(value)
    return [(bounds[0], bounds[1], *_units(bounds[2]))] if bounds is not None else []


def _sampled_data(value: Any) -> list[tuple[Any, ...]]:
    bounds = sampled_bounds(value)
    return [(*bounds, *_units(value["origin"]))] if bounds is not None else []


def _date(value: Any) -> list[tuple[Any, ...]]:
    bounds = date_range(value) if type(value) is str else None
    return [bounds] if bounds is not None else []


def _period(value: Any) -> list[tuple[Any, ...]]:
    if type(value) is not dict or (value.get("start") is None and value.get("end") is None):
        return []
    low = _date(value["start"]) if value.get("start") is not None else [(MIN_TIME, MIN_TIME)]
    high = _date(value["end"]) if value.get("end") is not None else [(MAX_TIME, MAX_TIME)]
    return [(low[0][0], high[0][1])] if low and high else []


def _timing(value: Any) -> list[tuple[Any, ...]]:
    if type(value) is not dict:
        return []
    events = value.get("event")
    found = [tail for event in events for tail in _date(event)] if type(events) is list else []
    repeat = value.get("repeat")
    return found + (_period(repeat.get("boundsPeriod")) if type(repeat) is dict else [])


def _string(value: Any) -> list[tuple[Any, ...]]:
    if type(value) is not str:
        return []
    normalised = normalise_text(value)
    return [(normalised, value)] if normalised else []


def _parts(*names: str) -> Tails:
    def tails(value: Any) -> list[tuple[Any, ...]]:
        if type(value) is not dict:
            return []
        found: list[tuple[Any, ...]] = []
        for name in names:
            item = value.get(name)
            for text in item if type(item) is list else [item]:
                found.extend(_string(text))
        return found

    return tails


def _number_tail(value: Any) -> list[tuple[Any, ...]]:
    number = as_number(value)
    return [(number, number)] if number is not None else []


def _number_range(value: Any) -> list[tuple[Any, ...]]:
    bounds = range_bounds(value)
    return [(bounds[0], bounds[1])] if bounds is not None else []


def _uri(value: Any) -> list[tuple[Any, ...]]:
    return [(value,)] if _text(value) is not None else []


def _reference(value: Any) -> list[tuple[Any, ...]]:
    literal = value.get("reference") if type(value) is dict else None
    parsed = parse_reference(literal) if type(literal) is str else None
    return [parsed] if parsed is not None else []


def _canonical(value: Any) -> list[tuple[Any, ...]]:
    if _text(value) is None:
        return []
    url, _, version = value.partition("|")
    return [(None, None, url, version or None)]


def _resource(value: Any) -> list[tuple[Any, ...]]:
    if type(value) is not dict:
        return []
    kind, ident = _text(value.get("resourceType")), _text(value.get("id"))
    return [(kind, ident, None, None)] if kind and ident else []


_TABLE: dict[str, dict[str, Tails]] = {
    "token": {
        **dict.fromkeys(TEXT_TYPES, _code),
        "boolean": _boolean,
        "Coding": _coding,
        "CodeableConcept": _codeable_concept,
        "Identifier": _identifier,
        "ContactPoint": _contact_point,
    },
    "quantity": {
        **dict.fromkeys(QUANTITY_TYPES, _quantity),
        "Money": _money,
        "Range": _quantity_range,
        "SampledData": _sampled_data,
    },
    "date": {
        "date": _date,
        "dateTime": _date,
        "instant": _date,
        "string": _date,
        "Period": _period,
        "Timing": _timing,
    },
    "string": {
        **dict.fromkeys(TEXT_TYPES, _string),
        "HumanName": _parts("family", "given", "prefix", "suffix", "text"),
        "Address": _parts("line", "city", "district", "state", "postalCode", "country", "text"),
    },
    "number": {**dict.fromkeys(NUMBER_TYPES, _number_tail), "Range": _number_range},
    "uri": dict.fromkeys(TEXT_TYPES, _uri),
    "reference": {
        "Reference": _reference,
        "canonical": _canonical,
        "uri": _canonical,
        "url": _canonical,
        "Resource": _resource,
    },
}


def tails_for(component_type: str, fhir_type: str) -> Tails | None:
    """The component row function for ``fhir_type`` values of a ``component_type`` component."""
    found = _TABLE.get(component_type, {}).get(fhir_type)
    if found is None and component_type == "reference" and is_resource_type(fhir_type):
        return _resource
    return found
