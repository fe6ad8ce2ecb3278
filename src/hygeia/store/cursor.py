"""Opaque paging cursors: the sort-key values of the row a page ends (or starts) at.

Keyset paging keeps pages correct while data changes: a page never repeats or
skips a resource that did not itself change, however many are created or
deleted meanwhile.  The cursor is URL-safe base64 of a small JSON array.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest


def encode_cursor(direction: str, keys: list[Any]) -> str:
    raw = orjson.dumps([direction, *keys])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kinds: tuple[str, ...]) -> tuple[str, list[Any] | None]:
    """("n" or "p", boundary keys), or ("n", None) without a cursor.

    ``kinds`` tells, per sort key, what its value is: "key" (a row key, a 64-bit
    integer), "number" or "text".  A
    cursor is client input: a key of the wrong type or out of a 64-bit column's
    range would reach the database as a bad parameter, so it is refused here.
    """
    if not cursor:
        return "n", None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        data = None
    if not isinstance(data, list) or len(data) != len(kinds) + 1 \
            or data[0] not in ("n", "p") \
            or not all(map(_fits, data[1:], kinds)):
        raise BadRequest("The _cursor value is not one this server issued for this query.",
                         expression="_cursor")
    return data[0], data[1:]


def _fits(key: Any, kind: str) -> bool:
    """A sort key of the expected kind: an integer or finite number in range, or text
    without NUL."""
    if type(key) is int:
        return kind != "text" and -_INT64 <= key < _INT64
    if type(key) is float:
        return kind == "number" and math.isfinite(key)
    return kind == "text" and type(key) is str and "\x00" not in key


_INT64 = 2 ** 63
