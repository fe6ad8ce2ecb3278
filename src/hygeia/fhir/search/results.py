"""Result parameters: paging, sorting, includes, totals, summaries and element subsets."""

from __future__ import annotations

from dataclasses import dataclass, field

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry
from hygeia.fhir.spec import is_resource_type
from hygeia.fhir.validation.primitives import shown

SORTABLE = {"string", "token", "date", "number", "quantity", "reference", "uri"}
SUMMARY_MODES = {"true", "text", "data", "count", "false"}
TOTAL_MODES = {"none", "estimate", "accurate"}
# not a client value: a total only when it costs nothing (the first page holds every match);
# what ``$everything`` uses unless the client asks with ``_total``
WHEN_FREE = "when-free"
PASSIVE = {"_format", "_pretty"}


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key; ``parameter`` is None for ``_id``."""

    code: str
    parameter: SearchParameter | None
    descending: bool


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param[:Target]`` (or reverse, for ``_revinclude``); ``*`` = all."""

    source_type: str
    parameter: SearchParameter | None
    target_type: str | None
    iterate: bool
    # target types left out (``$everything``: compartment types arrive as matches)
    excluded_targets: tuple[str, ...] = ()


@dataclass(slots=True)
class ResultOptions:
    count: int = 50
    max_count: int = 1000
    count_given: bool = False
    cursor: str | None = None
    sort: list[SortKey] = field(default_factory=list)
    total: str = "accurate"
    summary: str | None = None
    elements: tuple[str, ...] = ()
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)


def apply_result_parameter(options: ResultOptions, name: str, value: str, resource_type: str,
                           registry: SearchRegistry) -> bool:
    """Apply ``name=value`` if it is a result parameter; False when it is a search parameter."""
    if name in PASSIVE:
        return True
    if name == "_count":
        options.count = min(non_negative(name, value), options.max_count)
        options.count_given = True
    elif name == "_cursor":
        options.cursor = value
    elif name == "_sort":
        options.sort = [_sort_key(part, resource_type, registry)
                        for part in value.split(",") if part]
    elif name == "_total":
        options.total = _one_of(name, value, TOTAL_MODES)
    elif name == "_summary":
        options.summary = _one_of(name, value, SUMMARY_MODES)
    elif name == "_elements":
        options.elements = tuple(e.strip() for e in value.split(",") if e.strip())
    elif name in ("_include", "_include:iterate", "_include:recurse"):
        options.includes.append(_include(value, name != "_include", registry, reverse=False))
    elif name in ("_revinclude", "_revinclude:iterate", "_revinclude:recurse"):
        options.revincludes.append(_include(value, name != "_revinclude", registry,
                                            reverse=True))
    else:
        return False
    return True


MAX_DIGITS = 18  # every integer of up to 18 digits fits a signed 64-bit database column


def non_negative(name: str, value: str) -> int:
    """A client's integer parameter: 1 to 18 ASCII digits, else 400.

    ``str.isdigit`` alone also accepts superscripts and other scripts' digits
    (``int`` then fails), and Python refuses to convert more than 4,300 digits.
    """
    if not 0 < len(value) <= MAX_DIGITS or not value.isascii() or not value.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer of at most {MAX_DIGITS} "
                         f"digits, not {shown(value)}.", expression=name)
    return int(value)


def _one_of(name: str, value: str, allowed: set[str]) -> str:
    if value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(sorted(allowed))}, not '{value}'.",
                         expression=name)
    return value


def _sort_key(part: str, resource_type: str, registry: SearchRegistry) -> SortKey:
    descending = part.startswith("-")
    code = part.lstrip("-")
    if code == "_id":
        return SortKey(code, None, descending)
    parameter = registry.get(resource_type, code)
    if parameter is None or parameter.type not in SORTABLE or not parameter.indexed:
        raise BadRequest(f"Cannot sort {resource_type} by '{code}': not a sortable search "
                         "parameter of this type.", code="not-supported", expression="_sort")
    return SortKey(code, parameter, descending)


def _include(value: str, iterate: bool, registry: SearchRegistry, *, reverse: bool) -> Include:
    name = "_revinclude" if reverse else "_include"
    if value == "*":
        return Include("*", None, None, iterate)
    pieces = value.split(":")
    if len(pieces) not in (2, 3) or not is_resource_type(pieces[0]):
        raise BadRequest(f"{name}={value} must look like Type:parameter[:TargetType].",
                         expression=name)
    source, code = pieces[0], pieces[1]
    target = pieces[2] if len(pieces) == 3 else None
    if target is not None and not is_resource_type(target):
        raise BadRequest(f"{name}={value}: '{target}' is not a resource type.", expression=name)
    if code == "*":
        return Include(source, None, target, iterate)
    parameter = registry.get(source, code)
    if parameter is None or parameter.type != "reference":
        raise BadRequest(f"{name}={value}: '{code}' is not a reference parameter of {source}.",
                         expression=name)
    return Include(source, parameter, target, iterate)
