"""String search normalisation, and the string parameter normalisers.

search.html: a string parameter matches case- and accent-insensitively, and
(by our choice, as most servers do) with runs of whitespace collapsed.  The
query side must normalise search values with :func:`normalise_text` too.

>>> normalise_text("  Zoë   O'BRIEN ")
"zoe o'brien"
"""

from __future__ import annotations

import unicodedata
from typing import Any

from hygeia.fhir.search.rows import IndexRows

__all__ = [
    "clear_text_memo",
    "normalise_text",
    "string_address",
    "string_human_name",
    "string_primitive",
]

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def normalise_text(text: str) -> str:
    """Lower-case (casefold), strip accents (NFKD without combining marks), collapse spaces.

    Memoised: displays and names repeat across resources ("Body Height"), and a
    dictionary hit is cheaper than even the ASCII fast path.  A full memo is
    emptied rather than frozen, so a long-running server keeps memoising the
    texts of the data it sees now.
    """
    found = _MEMO.get(text)
    if found is None:
        found = " ".join(text.lower().split()) if text.isascii() else _normalise_unicode(text)
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.clear()
        _MEMO[text] = found
    return found


_MEMO: dict[str, str] = {}
_MEMO_SIZE = 16384


def clear_text_memo() -> None:
    """Forget memoised normalisations (benchmarks of new data)."""
    _MEMO.clear()


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
