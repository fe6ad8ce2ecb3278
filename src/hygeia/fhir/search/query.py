"""A parsed, backend-neutral search query.

The query string becomes a small tree of clauses that every backend (and, in
the search issue, the in-memory matcher) evaluates the same way.  Values of
one parameter separated by commas are OR-ed inside one clause; repeated
parameters become separate clauses that are AND-ed.

Only the parameters the foundation needs are understood here (``_id`` and
``identifier`` tokens, enough for conditional create/update/delete); the full
search engine grows this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hygeia.fhir.outcome import BadRequest, Issue

SUPPORTED_PARAMETERS = ("_id", "identifier")
RESULT_PARAMETERS = ("_count", "_offset", "_format", "_pretty", "_total")


@dataclass(frozen=True, slots=True)
class IdClause:
    """``_id=a,b``: the logical id is one of ``ids``."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenValue:
    """One token search value: ``system|code``, ``|code`` (no system) or ``code`` (any system).

    ``system`` is None for "any system" and "" for "no system".  ``code`` is
    None for ``system|`` (any code in that system).
    """

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class TokenClause:
    """A token parameter matching any of ``values``."""

    param: str
    values: tuple[TokenValue, ...]


Clause = IdClause | TokenClause


@dataclass(slots=True)
class Query:
    """A type-level search: AND of clauses, plus paging."""

    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = 50
    offset: int = 0
    ignored: list[Issue] = field(default_factory=list)


def split_escaped(value: str, separator: str, *, unescape: bool = True) -> list[str]:
    r"""Split on ``separator`` unless it is escaped with a backslash.

    With ``unescape`` the escapes are removed (``a\,b`` -> ``a,b``); without it they
    are kept for a later, inner split (commas first, then ``|`` inside a token).
    """
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


def parse_token(text: str) -> TokenValue:
    """Parse ``system|code``, ``|code``, ``system|`` or ``code``."""
    pieces = split_escaped(text, "|")
    if len(pieces) == 1:
        return TokenValue(None, pieces[0])
    if len(pieces) == 2:
        system, code = pieces
        return TokenValue(system, code or None)
    raise BadRequest(f"Token value '{text}' has more than one '|' separator.")


def parse_query(
    resource_type: str,
    params: Iterable[tuple[str, str]],
    *,
    strict: bool = False,
    max_count: int = 1000,
) -> Query:
    """Parse query parameters for ``resource_type`` into a :class:`Query`.

    Unknown parameters are ignored and reported (``Query.ignored``), or raise
    :class:`BadRequest` when ``strict`` (``Prefer: handling=strict``).
    """
    query = Query(resource_type)
    for name, value in params:
        _apply_parameter(query, name, value, strict=strict, max_count=max_count)
    return query


def _apply_parameter(query: Query, name: str, value: str, *, strict: bool, max_count: int) -> None:
    if name == "_id":
        query.clauses.append(IdClause(tuple(split_escaped(value, ","))))
    elif name == "identifier":
        values = tuple(parse_token(part)
                       for part in split_escaped(value, ",", unescape=False))
        query.clauses.append(TokenClause("identifier", values))
    elif name == "_count":
        query.count = min(_non_negative(name, value), max_count)
    elif name == "_offset":
        query.offset = _non_negative(name, value)
    elif name in RESULT_PARAMETERS:
        return
    else:
        message = (f"Search parameter '{name}' is not supported by this server yet; "
                   f"supported: {', '.join(SUPPORTED_PARAMETERS)}.")
        if strict:
            raise BadRequest(message, code="not-supported", expression=name)
        query.ignored.append(Issue("not-supported", message + " It was ignored.", name, "warning"))


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not '{value}'.", expression=name)
    return int(value)


def parse_criteria(resource_type: str, criteria: str) -> Query:
    """Parse conditional-interaction criteria (``identifier=x|y&_id=z``) strictly.

    Conditional operations must never silently ignore a parameter: an ignored
    parameter would widen the match and could update or delete the wrong data.
    """
    from urllib.parse import parse_qsl

    pairs: Sequence[tuple[str, str]] = parse_qsl(criteria, keep_blank_values=True)
    if not pairs:
        raise BadRequest("Conditional criteria are empty.", expression="criteria")
    query = parse_query(resource_type, pairs, strict=True)
    if not query.clauses:
        raise BadRequest("Conditional criteria name no search parameter.", expression="criteria")
    return query
