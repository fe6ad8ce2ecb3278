"""String search normalisation, and the string parameter normalisers.

search.html: a string parameter matches case- and accent-insensitively, and
(by our choice, as most servers do) with runs of whitespace collapsed.  The
query side must normalise search values with :func:`normalise_text` too.

>>> normalise_text("  Zoë   O'BRIEN ")
"zoe o'brien"
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

from hygeia.fhir.search.rows import IndexRows

__all__ = ["normalise_text", "string_address", "string_human_name", "string_primitive"]

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def normalise_text(text: str) -> str:
    """Lower-case (casefold), strip accents (NFKD without combining marks), collapse spaces."""
    if text.isascii():
        return " ".join(text.lower().split())
    return _normalise_unicode(text)


@lru_cache(maxsize=8192)
def _normalise_unicode(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(stripped.casefold().split())


def string_primitive(code: str, value: Any, rows: IndexRows) -> None:
    """string, markdown (and other text primitives): one row with the exact text kept."""
    if type(value) is str:
        normalised = normalise_text(value)
        if normalised:
            rows.strings.append((code, normalised, value))


def string_human_name(code: str, value: Any, rows: IndexRows) -> None:
    """HumanName: family, each given, prefix, suffix and text are each searchable."""
    _parts(code, value, _NAME_PARTS, rows)


def string_address(code: str, value: Any, rows: IndexRows) -> None:
    """Address: each line, city, district, state, postalCode, country and text."""
    _parts(code, value, _ADDRESS_PARTS, rows)


def _parts(code: str, value: Any, parts: tuple[str, ...], rows: IndexRows) -> None:
    if type(value) is not dict:
        return
    for part in parts:
        item = value.get(part)
        if type(item) is list:
            for text in item:
                string_primitive(code, text, rows)
        elif item is not None:
            string_primitive(code, item, rows)
