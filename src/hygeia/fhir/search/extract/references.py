"""Reference parameter normalisers, and the target test behind ``where(resolve() is T)``.

Row shapes (``ReferenceRow`` = param, type, id, url, version):

=====================================  ==========================================
``Patient/1``                          ``(p, "Patient", "1", None, None)``
``Patient/1/_history/2``               ``(p, "Patient", "1", None, "2")``
``http://x/fhir/Patient/1``            ``(p, "Patient", "1", "http://x/fhir/Patient/1", None)``
``urn:uuid:...`` / ``urn:oid:...``     ``(p, Reference.type or None, None, urn, None)``
``#contained``                         no row (contained resources are not indexed)
canonical/uri ``http://x/Q|2``         ``(p, None, None, "http://x/Q", "2")``
an inline resource (Bundle.entry)      ``(p, resourceType, id, None, None)``
=====================================  ==========================================

A logical reference (``Reference.identifier``) becomes a *token* row under
``"<param>:identifier"`` so the ``:identifier`` modifier is a token lookup.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from hygeia.fhir.search.rows import IndexRows
from hygeia.fhir.spec import is_resource_type

__all__ = [
    "IDENTIFIER",
    "parse_reference",
    "reference_canonical",
    "reference_identifier",
    "reference_reference",
    "reference_resource",
    "target_type",
]

IDENTIFIER = ":identifier"
ParsedReference = tuple[str | None, str | None, str | None, str | None]

_LITERAL = re.compile(
    r"(?:(?P<base>[A-Za-z][A-Za-z0-9+.\-]*://.+?)/)?(?P<type>[A-Z][A-Za-z]+)"
    r"/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?"
)


@lru_cache(maxsize=16384)
def parse_reference(text: str) -> ParsedReference | None:
    """Split a literal reference into (type, id, absolute url, version); None if unusable.

    >>> parse_reference("http://x/fhir/Patient/1/_history/2")
    ('Patient', '1', 'http://x/fhir/Patient/1', '2')
    >>> parse_reference("#contained") is None
    True
    """
    if text.startswith("urn:"):
        return None, None, text, None
    match = _LITERAL.fullmatch(text)
    if match is None or not is_resource_type(match["type"]):
        return None
    kind, ident, base = match["type"], match["id"], match["base"]
    url = f"{base}/{kind}/{ident}" if base else None
    return kind, ident, url, match["version"]


def reference_reference(code: str, value: Any, rows: IndexRows) -> None:
    """Reference: a row for a literal reference, a token row for a logical one."""
    if type(value) is not dict:
        return
    literal = value.get("reference")
    parsed = parse_reference(literal) if type(literal) is str else None
    if parsed is not None:
        kind = parsed[0] or _declared_type(value)
        rows.references.append((code, kind, parsed[1], parsed[2], parsed[3]))
    identifier = value.get("identifier")
    if type(identifier) is dict:
        _identifier_token(code, identifier, rows)


def reference_identifier(code: str, value: Any, rows: IndexRows) -> None:
    """Reference: only :func:`reference_reference`'s token row of a logical reference.

    For a filtered parameter (:mod:`.shared`: Observation ``patient`` is ``subject``
    narrowed to Patient) the store keeps no reference rows of its own, only these,
    so its plan extracts them alone instead of extracting both and dropping one.
    """
    if type(value) is dict:
        identifier = value.get("identifier")
        if type(identifier) is dict:
            _identifier_token(code, identifier, rows)


def _identifier_token(code: str, identifier: dict[str, Any], rows: IndexRows) -> None:
    system, ident = identifier.get("system"), identifier.get("value")
    system = system if type(system) is str and system else None
    ident = ident if type(ident) is str and ident else None
    if system is not None or ident is not None:
        rows.tokens.append((code + IDENTIFIER, system, ident))


def reference_canonical(code: str, value: Any, rows: IndexRows) -> None:
    """canonical/uri: the URL without ``|version``, and the version on its own."""
    if type(value) is str and value:
        url, _, version = value.partition("|")
        rows.references.append((code, None, None, url, version or None))


def reference_resource(code: str, value: Any, rows: IndexRows) -> None:
    """An inline resource (``Bundle.entry[0].resource``): its type and id."""
    if type(value) is dict:
        kind, ident = value.get("resourceType"), value.get("id")
        if type(kind) is str and type(ident) is str and kind and ident:
            rows.references.append((code, kind, ident, None, None))


def target_type(node: Any) -> str | None:
    """The resource type a Reference (or canonical URL) points at, when it can be told.

    Used for ``where(resolve() is Patient)``: from the literal reference, else
    from Reference.type (a type name or its StructureDefinition URL).
    """
    if type(node) is str:
        parsed = parse_reference(node.partition("|")[0])
        return parsed[0] if parsed is not None else None
    if type(node) is not dict:
        return None
    literal = node.get("reference")
    if type(literal) is str:
        parsed = parse_reference(literal)
        if parsed is not None and parsed[0] is not None:
            return parsed[0]
    return _declared_type(node)


def _declared_type(reference: dict[str, Any]) -> str | None:
    declared = reference.get("type")
    if type(declared) is not str:
        return None
    name = declared.rsplit("/", 1)[-1]
    return name if is_resource_type(name) else None
