"""A parsed, backend-neutral search query (search.html of R4).

The query string becomes a tree of clauses that every backend (and the
in-memory matcher) evaluates the same way: values of one parameter separated
by commas are OR-ed inside one clause; repeated parameters become separate
clauses that are AND-ed.  Chains (``subject:Patient.name=x``) and reverse
chains (``_has:Observation:patient:code=x``) nest a clause evaluated against
another resource type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from hygeia.fhir.outcome import BadRequest, Issue
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry, default_registry
from hygeia.fhir.search.results import ResultOptions, apply_result_parameter
from hygeia.fhir.search.values import SearchValue, TokenValue, parse_value, split_escaped
from hygeia.fhir.spec import is_resource_type

MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "of-type", "in", "not-in", "missing"},
    "reference": {"identifier", "missing"},
    "uri": {"above", "below", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "composite": {"missing"},
}
PREFIXED_TYPES = {"date", "number", "quantity"}
# datatypes.html#string: no character below U+0020 but tab, CR and LF; nothing stored
# can hold one, and PostgreSQL cannot even compare text holding a NUL
_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]").search


@dataclass(frozen=True, slots=True)
class SearchLimits:
    """The most one search request may ask for; beyond them it is refused with 400.

    Each bounds work a short request could otherwise multiply: every value of a
    parameter is one more OR arm (SQLite refuses expression trees deeper than
    1,000), every chain step one more nested subquery (SQLite's parser stack
    overflowed at 4, PostgreSQL ran 50 for minutes).  docs/guide/search.md lists
    them with their settings.
    """

    values: int = 100  # comma-separated values of one parameter (OR-ed)
    chain_depth: int = 3  # reference steps of a chain or _has (``a.b.c.name``: 3)
    parameters: int = 100  # name=value pairs in one request


@dataclass(frozen=True, slots=True)
class IdClause:
    """``_id=a,b``: the logical id is one of ``ids``."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ParameterClause:
    """One occurrence of a parameter: matches when any of ``values`` matches.

    ``missing`` is set (and ``values`` empty) for ``:missing=true|false``.
    """

    parameter: SearchParameter
    modifier: str | None
    values: tuple[SearchValue, ...]
    missing: bool | None = None


@dataclass(frozen=True, slots=True)
class ChainClause:
    """``ref.param=x``: a reference whose target (of one of the types) satisfies ``inner``."""

    parameter: SearchParameter
    alternatives: tuple[tuple[str, Clause], ...]


@dataclass(frozen=True, slots=True)
class HasClause:
    """``_has:Type:ref:param=x``: some ``Type`` that points here through ``ref`` satisfies inner."""

    source_type: str
    parameter: SearchParameter
    inner: Clause


@dataclass(frozen=True, slots=True)
class CompartmentClause:
    """In the compartment of ``owner_type/owner_id``: any of ``params`` references it."""

    owner_type: str
    owner_id: str
    params: tuple[str, ...]


Clause = IdClause | ParameterClause | ChainClause | HasClause | CompartmentClause


@dataclass(slots=True)
class Query:
    """A search over one or more types: AND of clauses, plus result options."""

    resource_type: str
    clauses: list[Clause] = field(default_factory=list)
    options: ResultOptions = field(default_factory=ResultOptions)
    ignored: list[Issue] = field(default_factory=list)
    types: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return self.options.count

    @count.setter
    def count(self, value: int) -> None:
        self.options.count = value


def parse_query(resource_type: str, params: Iterable[tuple[str, str]], *, strict: bool = False,
                max_count: int = 1000, registry: SearchRegistry | None = None,
                limits: SearchLimits | None = None) -> Query:
    """Parse query parameters for ``resource_type`` into a :class:`Query`.

    Unknown parameters are ignored and reported (``Query.ignored``), or raise
    :class:`BadRequest` when ``strict`` (``Prefer: handling=strict``).  A client's
    parameters are held to ``limits`` (None: the server's own queries, unbounded).
    """
    registry = registry or default_registry()
    query = Query(resource_type)
    query.options.max_count = max_count
    params = list(params)
    if limits is not None:
        check_limits(params, limits)
    for name, value in params:
        if apply_result_parameter(query.options, name, value, resource_type, registry):
            continue
        try:
            query.clauses.append(parse_clause(resource_type, name, value, registry))
        except UnknownParameter as unknown:
            if strict:
                raise BadRequest(str(unknown), code="not-supported", expression=name) from None
            query.ignored.append(Issue("not-supported", f"{unknown} It was ignored.", name,
                                       "warning"))
    return query


def check_limits(params: list[tuple[str, str]], limits: SearchLimits) -> None:
    """Refuse (400) parameters beyond ``limits`` or holding control characters,
    before any of them is parsed, naming the parameter at fault."""
    if len(params) > limits.parameters:
        raise BadRequest(f"The request has {len(params):,} search parameters; at most "
                         f"{limits.parameters:,} are allowed.", code="too-costly",
                         expression=params[limits.parameters][0])
    for name, value in params:
        check_text(name, name, "name")
        check_text(name, value, "value")
        if value.count(",") >= limits.values and \
                len(split_escaped(value, ",")) > limits.values:
            raise BadRequest(f"Search parameter '{name}' has more than {limits.values:,} "
                             "comma-separated values; split the search or use fewer values.",
                             code="too-costly", expression=name)
        depth = name.count(".") + name.count("_has:")
        if depth > limits.chain_depth:
            raise BadRequest(f"Search parameter '{name}' chains {depth} references; at most "
                             f"{limits.chain_depth} are allowed.", code="too-costly",
                             expression=name)


def check_text(name: str, text: str, part: str) -> None:
    """Refuse a parameter name or value holding a control character (400)."""
    found = _CONTROL_CHARACTER(text)
    if found is not None:
        raise BadRequest(f"The {part} of search parameter {name!r} contains the control "
                         f"character U+{ord(found.group()):04X}, which no FHIR value can hold.",
                         expression=name)


class UnknownParameter(Exception):
    """A parameter this server does not know for the type (reported, not fatal, by default)."""


def parse_clause(resource_type: str, name: str, value: str,
                 registry: SearchRegistry) -> Clause:
    """Parse one ``name=value`` pair against ``resource_type``."""
    if name.startswith("_has:"):
        return _parse_has(resource_type, name, value, registry)
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    if code == "_id" and not dot and not modifier:
        return IdClause(tuple(split_escaped(value, ",")))
    parameter = registry.get(resource_type, code)
    if parameter is None or (not parameter.indexed and code != "_id"):
        raise UnknownParameter(f"Search parameter '{code}' is not known for {resource_type}.")
    if dot:
        return _parse_chain(parameter, modifier or None, rest, value, registry)
    return _parse_parameter(parameter, modifier or None, value)


def _parse_parameter(parameter: SearchParameter, modifier: str | None,
                     value: str) -> ParameterClause:
    kind = parameter.type
    allowed = MODIFIERS.get(kind, set())
    type_modifier = kind == "reference" and modifier is not None and is_resource_type(modifier)
    if modifier is not None and modifier not in allowed and not type_modifier:
        raise BadRequest(f"Modifier ':{modifier}' is not supported for {kind} parameter "
                         f"'{parameter.code}'; supported: "
                         f"{', '.join(sorted(allowed)) or 'none'}.", code="not-supported",
                         expression=f"{parameter.code}:{modifier}")
    if modifier == "missing":
        if value not in ("true", "false"):
            raise BadRequest(f"{parameter.code}:missing must be true or false.",
                             expression=f"{parameter.code}:missing")
        return ParameterClause(parameter, modifier, (), value == "true")
    parts = split_escaped(value, ",", unescape=False)
    values = tuple(parse_value(parameter, modifier, part) for part in parts if part != "")
    if not values:
        raise BadRequest(f"Search parameter '{parameter.code}' has an empty value.",
                         expression=parameter.code)
    return ParameterClause(parameter, modifier, values)


def _parse_chain(parameter: SearchParameter, modifier: str | None, rest: str, value: str,
                 registry: SearchRegistry) -> ChainClause:
    if parameter.type != "reference":
        raise BadRequest(f"'{parameter.code}' is not a reference parameter, so it cannot be "
                         "chained.", expression=parameter.code)
    targets = (modifier,) if modifier else parameter.target
    inner_code = rest.partition(".")[0].partition(":")[0]
    alternatives = []
    for target in targets:
        if target and is_resource_type(target) and (
                inner_code == "_id" or registry.get(target, inner_code) is not None
                or inner_code.startswith("_has")):
            alternatives.append((target, parse_clause(target, rest, value, registry)))
    if not alternatives:
        raise BadRequest(f"The chain '{parameter.code}.{rest}' matches no target type of "
                         f"'{parameter.code}'; name one with {parameter.code}:Type.{rest}.",
                         expression=parameter.code)
    return ChainClause(parameter, tuple(alternatives))


def _parse_has(resource_type: str, name: str, value: str, registry: SearchRegistry) -> HasClause:
    pieces = name.split(":", 3)
    if len(pieces) != 4 or not is_resource_type(pieces[1]):
        raise BadRequest(f"'{name}' must look like _has:Type:reference:parameter.",
                         expression=name)
    _, source_type, code, rest = pieces
    parameter = registry.get(source_type, code)
    if parameter is None or parameter.type != "reference":
        raise BadRequest(f"'{code}' is not a reference parameter of {source_type}.",
                         expression=name)
    if parameter.target and resource_type not in parameter.target:
        raise BadRequest(f"{source_type}.{code} cannot point at a {resource_type}.",
                         expression=name)
    return HasClause(source_type, parameter, parse_clause(source_type, rest, value, registry))


def parse_criteria(resource_type: str, criteria: str,
                   registry: SearchRegistry | None = None,
                   limits: SearchLimits | None = None) -> Query:
    """Parse conditional-interaction criteria (``identifier=x|y&_id=z``) strictly.

    Conditional operations must never silently ignore a parameter: an ignored
    parameter would widen the match and could update or delete the wrong data.
    """
    pairs = parse_qsl(criteria, keep_blank_values=True)
    if not pairs:
        raise BadRequest("Conditional criteria are empty.", expression="criteria")
    query = parse_query(resource_type, pairs, strict=True, registry=registry,
                        limits=limits or SearchLimits())
    if not query.clauses:
        raise BadRequest("Conditional criteria name no search parameter.", expression="criteria")
    return query


__all__ = ["ChainClause", "Clause", "CompartmentClause", "HasClause", "IdClause",
           "ParameterClause", "Query", "SearchLimits", "TokenValue", "parse_clause",
           "parse_criteria", "parse_query"]
