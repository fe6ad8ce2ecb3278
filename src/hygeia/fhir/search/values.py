"""Parsing one search value by parameter type (search.html of R4).

Numbers, dates and quantities carry a comparison prefix and an implicit
range set by the precision of the value: ``100`` means [99.5, 100.5),
``2020-03`` means the whole of March 2020.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.extract.text import normalise_text
from hygeia.fhir.search.parameters import SearchParameter
from hygeia.fhir.spec import value_set_expansion

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIXED = re.compile(r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?(.*)", re.S)
_REFERENCE = re.compile(r"(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
                        r"(?:/_history/(?P<version>[^/]+))?")


@dataclass(frozen=True, slots=True)
class StringValue:
    text: str
    norm: str


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``system|code``; system None = any system, "" = no system; code None = any code."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class InValue:
    """``:in`` / ``:not-in``: a code from the (expanded) value set ``url``."""

    url: str
    codes: frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class OfTypeValue:
    """``:of-type``: identifier type system|code|value."""

    system: str
    code: str
    value: str


@dataclass(frozen=True, slots=True)
class RangeValue:
    """A prefixed number (or date): the search value ``value`` and its precision range."""

    prefix: str
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class DateValue(RangeValue):
    """A prefixed date: ``[low, high)`` in microseconds, compared with stored date ranges.

    Its own type because dates and numbers compare differently: a number's
    ``gt``/``lt``/``sa``/``eb`` use the exact value, a date's the bounds of its range.
    """


@dataclass(frozen=True, slots=True)
class QuantityValue:
    prefix: str
    value: float
    low: float
    high: float
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A reference search value; any part may be open (None)."""

    type: str | None
    id: str | None
    url: str | None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str


@dataclass(frozen=True, slots=True)
class CompositeValue:
    parts: tuple[SearchValue, ...]


SearchValue = (StringValue | TokenValue | OfTypeValue | InValue | RangeValue | DateValue
               | QuantityValue | ReferenceValue | UriValue | CompositeValue)


def normalize(text: str) -> str:
    """Case- and accent-insensitive form: the very function the index uses."""
    return normalise_text(text)


def split_escaped(value: str, separator: str, *, unescape: bool = True) -> list[str]:
    r"""Split on ``separator`` unless it is escaped with a backslash.

    With ``unescape`` the escapes are removed (``a\,b`` -> ``a,b``); without it they
    are kept for a later, inner split (commas first, then ``$`` and ``|``).
    """
    if "\\" not in value:  # nothing escaped: a plain split (long OR lists of ids)
        return value.split(separator)
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "\\")
            current.append(escaped if unescape else "\\" + escaped)
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    return "".join(split_escaped(value, "\x00"))


def parse_value(parameter: SearchParameter, modifier: str | None, text: str,
                *, type_name: str | None = None) -> SearchValue:
    """Parse one (comma-separated part of a) search value for ``parameter``."""
    kind = type_name or parameter.type
    where = parameter.code
    if kind == "string":
        plain = unescape(text)
        return StringValue(plain, normalize(plain))
    if kind == "token":
        return parse_token(text, modifier, where)
    if kind == "number":
        return parse_number(text, where)
    if kind == "date":
        return parse_date(text, where)
    if kind == "quantity":
        return parse_quantity(text, where)
    if kind == "reference":
        return parse_reference(text, modifier, where)
    if kind == "uri":
        return UriValue(unescape(text))
    if kind == "composite":
        return parse_composite(parameter, text)
    raise BadRequest(f"Parameter '{where}' of type {kind} cannot be searched.",
                     code="not-supported", expression=where)


def parse_token(text: str, modifier: str | None, where: str) -> SearchValue:
    pieces = [unescape(p) for p in split_escaped(text, "|", unescape=False)]
    if modifier == "text":
        plain = unescape(text)
        return StringValue(plain, normalize(plain))
    if modifier in ("in", "not-in"):
        url = unescape(text)
        codes = value_set_expansion(url)
        if codes is None:
            raise BadRequest(f"Value set '{url}' is not one Hygeia can expand (only value sets "
                             "the FHIR specification enumerates are supported).",
                             code="not-supported", expression=f"{where}:{modifier}")
        return InValue(url, codes)
    if modifier == "of-type":
        if len(pieces) != 3:
            raise BadRequest(f"{where}:of-type needs system|code|value, not '{text}'.",
                             expression=where)
        return OfTypeValue(*pieces)
    if len(pieces) == 1:
        return TokenValue(None, pieces[0] or None)
    if len(pieces) == 2:
        return TokenValue(pieces[0], pieces[1] or None)
    raise BadRequest(f"Token value '{text}' of {where} has more than one '|' separator.",
                     expression=where)


def _prefixed(text: str) -> tuple[str, str]:
    match = _PREFIXED.fullmatch(text)
    assert match is not None
    prefix, rest = match.group(1) or "eq", match.group(2)
    return prefix, rest


def parse_number(text: str, where: str) -> RangeValue:
    """``[prefix]decimal``; the implicit range is half a unit of the last digit each side."""
    prefix, rest = _prefixed(text)
    number, half = _decimal(rest, where)
    return RangeValue(prefix, float(number), float(number - half), float(number + half))


def _decimal(text: str, where: str) -> tuple[Decimal, Decimal]:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise BadRequest(f"'{text}' is not a number (for {where}).", expression=where) from None
    if not number.is_finite():
        raise BadRequest(f"'{text}' is not a finite number (for {where}).", expression=where)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    return number, Decimal(5).scaleb(exponent - 1)


def parse_date(text: str, where: str) -> DateValue:
    prefix, rest = _prefixed(text)
    low, high = fhir_datetime_range(rest, name=where)
    return DateValue(prefix, float(low), float(low), float(high))


def parse_quantity(text: str, where: str) -> QuantityValue:
    """``[prefix]number|system|code``, ``[prefix]number||code`` or ``[prefix]number``."""
    pieces = [unescape(p) for p in split_escaped(text, "|", unescape=False)]
    if len(pieces) not in (1, 3):
        raise BadRequest(f"Quantity '{text}' must be number, number|system|code or "
                         f"number||code (for {where}).", expression=where)
    prefix, rest = _prefixed(pieces[0])
    number, half = _decimal(rest, where)
    system = pieces[1] or None if len(pieces) == 3 else None
    code = pieces[2] or None if len(pieces) == 3 else None
    return QuantityValue(prefix, float(number), float(number - half), float(number + half),
                         system, code)


def parse_reference(text: str, modifier: str | None, where: str) -> SearchValue:
    """``id``, ``Type/id``, ``[base]/Type/id[/_history/v]``, a canonical ``url|version``."""
    plain = unescape(text)
    if modifier == "identifier":
        return parse_token(text, None, where)
    type_hint = modifier if modifier and modifier[:1].isupper() else None
    if "/" not in plain and ":" not in plain:
        return ReferenceValue(type_hint, plain, None)
    url, _, version = plain.partition("|")
    match = _REFERENCE.fullmatch(url)
    if match is None:
        return ReferenceValue(None, None, url, version or None)
    absolute = url if match.group("base") else None
    return ReferenceValue(match.group("type"), match.group("id"), absolute,
                          match.group("version"))


def parse_composite(parameter: SearchParameter, text: str) -> CompositeValue:
    pieces = split_escaped(text, "$", unescape=False)
    if len(pieces) != len(parameter.components):
        raise BadRequest(f"{parameter.code} needs {len(parameter.components)} values joined "
                         f"by '$', not '{text}'.", expression=parameter.code)
    return CompositeValue(tuple(parse_value(parameter, None, piece, type_name=component.type)
                                for piece, component in zip(pieces, parameter.components,
                                                            strict=True)))
