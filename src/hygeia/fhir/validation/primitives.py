"""Checks for FHIR primitive values as they appear in JSON (json.html, datatypes.html).

One checker per primitive type is built once from the spec's regexes and kept
for the life of the process.  A checker takes the raw JSON value and returns
``None`` when it is valid, else ``(issue code, sentence)``: returning instead of
raising keeps the hot path free of exception set-up, and the sentence is only
built for bad values.

>>> check_primitive("date", "2024-02-30")
('value', "'2024-02-30' is not a valid date: there is no such day")
>>> check_primitive("integer", True)
('structure', 'expected a JSON number (integer) for integer, got a boolean')
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from hygeia.fhir import spec

Problem = tuple[str, str]
PrimitiveCheck = Callable[[Any], Problem | None]

# The spec's base64Binary regex, (\s*([0-9a-zA-Z\+/=]){4}\s*)+, backtracks
# exponentially on bad input in a backtracking engine (ReDoS).  This form accepts
# exactly the same language (\s* X4 (\s* X4)* \s*) without the ambiguity.
SAFE_REGEXES = {
    r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+": r"\s*(?:[0-9a-zA-Z+/=]{4}\s*)+",
}
# The string regex, [ \r\n\t\S]+, lets control characters through (\S); this one is
# the same language without them, so valid strings are scanned once, not twice.
STRICT_REGEXES = {
    r"[ \r\n\t\S]+": "[^\x00-\x08\x0b\x0c\x0e-\x1f]+",
}
CALENDAR_TYPES = frozenset({"date", "dateTime", "instant"})
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SHOWN_CHARS = 60
# datatypes.html#string: strings SHALL NOT contain characters below U+0020 other than
# tab, carriage return and line feed; the spec regexes (\S) let them through.  A NUL
# also cannot be stored in a PostgreSQL text column, so letting it in would fail later.
_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]").search


def json_type_name(value: Any) -> str:
    """The JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def shown(value: Any) -> str:
    """A short repr for messages, so a 1 MB bad value does not become a 1 MB issue."""
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        return text[: _SHOWN_CHARS - 3] + "..."
    return text


def is_real_day(value: str) -> bool:
    """True unless a date/dateTime/instant names a day its month does not have.

    The spec regexes accept ``2023-02-31``; datatypes.html says dates SHALL be
    valid dates.  Only called after the regex matched, so slicing is safe.

    >>> is_real_day("2024-02-29"), is_real_day("2023-02-29"), is_real_day("2023-04")
    (True, False, True)
    """
    if len(value) < 10:
        return True
    day = int(value[8:10])
    if day <= 28:
        return True
    month = int(value[5:7])
    if day > _DAYS_IN_MONTH[month]:
        return False
    if month != 2 or day != 29:
        return True
    year = int(value[:4])
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def is_xhtml_div(value: str) -> bool:
    """Narrative.div must be one XHTML ``<div>`` element (narrative.html).

    This is a shape check, not an XHTML parse: it starts with ``<div`` followed
    by whitespace, ``>`` or ``/`` and ends by closing it.
    """
    text = value.strip()
    if not text.startswith("<div") or len(text) < 6 or text[4] not in " \t\r\n>/":
        return False
    return text.endswith("</div>") or text.endswith("/>")


def _no_control_character(value: str) -> None:
    return None


def control_character_problem(name: str, value: str) -> Problem | None:
    """The problem of a string holding a control character FHIR forbids, else None.

    >>> control_character_problem("string", "a\\x00b")[1][:51]
    'string contains the control character U+0000 at pos'
    >>> control_character_problem("string", "tab\\tand\\r\\nnewline") is None
    True
    """
    found = _CONTROL_CHARACTER(value)
    if found is None:
        return None
    return "value", (f"{name} contains the control character U+{ord(found.group()):04X} at "
                     f"position {found.start() + 1}; FHIR strings may hold no character below "
                     "U+0020 except tab, carriage return and line feed")


def _wrong_type(name: str, kind: str) -> Callable[[Any], Problem]:
    def problem(value: Any) -> Problem:
        return "structure", f"expected a JSON {kind} for {name}, got {json_type_name(value)}"

    return problem


def _string_check(name: str, info: dict[str, Any]) -> PrimitiveCheck:
    # re.ASCII: in the spec's (Java / XML Schema) regexes \s is ASCII whitespace only.
    regex = info.get("regex") or r"[\s\S]+"
    strict = STRICT_REGEXES.get(regex)
    fullmatch = re.compile(strict or SAFE_REGEXES.get(regex, regex), re.ASCII).fullmatch
    calendar = name in CALENDAR_TYPES
    max_length = info.get("maxLength") or 0
    wrong = _wrong_type(name, "string")
    # a strict regex refuses control characters itself: no second scan of valid values
    control = _no_control_character if strict else _CONTROL_CHARACTER

    def check(value: Any) -> Problem | None:
        if type(value) is not str or not value:
            return wrong(value)
        if max_length and len(value) > max_length:
            return "value", f"{name} is longer than {max_length:,} characters"
        if fullmatch(value) is None:
            return control_character_problem(name, value) or \
                ("value", f"{shown(value)} is not a valid {name}")
        if control(value) is not None:
            return control_character_problem(name, value)
        if calendar and not is_real_day(value):
            return "value", f"{shown(value)} is not a valid {name}: there is no such day"
        return None

    return _base64_shortcut(check, max_length) if name == "base64Binary" else check


def _base64_shortcut(check: PrimitiveCheck, max_length: int) -> PrimitiveCheck:
    """``check`` preceded by :func:`_plain_base64`, for base64Binary alone."""

    def check_base64(value: Any) -> Problem | None:
        if type(value) is str and value and not (max_length and len(value) > max_length) \
                and _plain_base64(value):
            return None
        return check(value)

    return check_base64


def _plain_base64(value: str) -> bool:
    """True for base64 without whitespace that decodes strictly: the common shape of
    ``Attachment.data`` and ``Binary.data``, accepted by C code several times faster
    than the regex scans it.  Such a value is made of the base64 alphabet and ``=``
    in groups of four, so the regex accepts it too; anything else (whitespace, a stray
    ``=``) is left to the regex, which decides as before."""
    if len(value) % 4:
        return False
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except ValueError:  # binascii.Error, or a character beyond ASCII
        return False
    return True


def _xhtml_check(name: str, info: dict[str, Any]) -> PrimitiveCheck:
    wrong = _wrong_type(name, "string")

    def check(value: Any) -> Problem | None:
        if type(value) is not str or not value:
            return wrong(value)
        if not is_xhtml_div(value):
            return "value", f"{shown(value)} is not XHTML: it must be one <div> element"
        return control_character_problem(name, value)

    return check


def _integer_check(name: str, info: dict[str, Any]) -> PrimitiveCheck:
    low, high = info["min"], info["max"]
    wrong = _wrong_type(name, f"number ({name})")

    def check(value: Any) -> Problem | None:
        if type(value) is not int:
            return wrong(value)
        if value < low or value > high:
            return "value", f"{value} is out of range for {name} ({low:,}..{high:,})"
        return None

    return check


def _decimal_check(name: str, info: dict[str, Any]) -> PrimitiveCheck:
    wrong = _wrong_type(name, "number")

    def check(value: Any) -> Problem | None:
        kind = type(value)
        if kind is int:
            return None
        if kind is float or kind is Decimal:
            if math.isfinite(value):
                return None
            return "value", f"{value} is not a valid decimal"
        return wrong(value)

    return check


def _boolean_check(name: str, info: dict[str, Any]) -> PrimitiveCheck:
    wrong = _wrong_type(name, "boolean")

    def check(value: Any) -> Problem | None:
        if value is True or value is False:
            return None
        return wrong(value)

    return check


_FACTORIES: dict[str, Callable[[str, dict[str, Any]], PrimitiveCheck]] = {
    "string": _string_check,
    "integer": _integer_check,
    "number": _decimal_check,
    "boolean": _boolean_check,
}


@cache
def primitive_checkers() -> dict[str, PrimitiveCheck]:
    """Primitive type name -> checker, compiled once from the shipped spec data."""
    checkers: dict[str, PrimitiveCheck] = {}
    for name, info in spec.primitive_types().items():
        factory = _xhtml_check if name == "xhtml" else _FACTORIES[info["kind"]]
        checkers[name] = factory(name, info)
    return checkers


class KnownGood(set[str]):
    """Strings a primitive's checker has already accepted, so repeats skip the regex.

    Real traffic repeats the same codes, systems and displays endlessly; a set
    lookup is several times cheaper than ``fullmatch``.  Only values the full
    checker accepted are added, so ``value in known or known.learn(value)`` is
    exactly the checker's verdict.  Bounded: short values only, and the set is
    emptied when full so it keeps tracking what is hot now.
    """

    __slots__ = ("check",)
    LIMIT = 16_384  # per primitive type: ~2 MB each at worst
    LONGEST = 80

    def __init__(self, check: PrimitiveCheck) -> None:
        super().__init__()
        self.check = check

    def learn(self, value: str) -> bool:
        """Run the full check on a value not seen before; remember it if valid."""
        if self.check(value) is not None:
            return False
        if len(value) <= self.LONGEST:
            if len(self) >= self.LIMIT:
                self.clear()
            self.add(value)
        return True


@cache
def known_good(type_name: str) -> KnownGood:
    """The shared :class:`KnownGood` memo of a string-kind primitive type."""
    return KnownGood(primitive_checkers()[type_name])


def check_primitive(type_name: str, value: Any) -> Problem | None:
    """Check one JSON value against a primitive type (``"date"``, ``"positiveInt"``...)."""
    return primitive_checkers()[type_name](value)
