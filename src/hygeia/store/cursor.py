"""Opaque paging cursors: the sort-key values of the row a page ends (or starts) at.

Keyset paging keeps pages correct while data changes: a page never repeats or
skips a resource that did not itself change, however many are created or
deleted meanwhile.  The cursor is URL-safe base64 of a small JSON array.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest


def encode_cursor(direction: str, keys: list[Any]) -> str:
    raw = orjson.dumps([direction, *keys])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, width: int) -> tuple[str, list[Any] | None]:
    """("n" or "p", boundary keys), or ("n", None) without a cursor."""
    if not cursor:
        return "n", None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        data = None
    if not isinstance(data, list) or len(data) != width + 1 or data[0] not in ("n", "p"):
        raise BadRequest("The _cursor value is not one this server issued for this query.",
                         expression="_cursor")
    return data[0], data[1:]
