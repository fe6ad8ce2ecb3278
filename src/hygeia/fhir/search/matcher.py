"""Evaluate a parsed query against resources in memory.

The same :class:`~hygeia.fhir.search.query.Query` the database answers is
evaluated here against one resource's index rows, written independently of
the SQL, so each is the other's oracle (the property-based search tests
compare them).  Transactions use it to resolve conditional references to
resources created earlier in the same Bundle; subscriptions and alert rules
will use it to test one changed resource.

Chains and ``_has`` need other resources: pass a :class:`MatchContext` that
knows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.query import (
    ChainClause,
    Clause,
    CompartmentClause,
    HasClause,
    IdClause,
    ParameterClause,
    Query,
)
from hygeia.fhir.search.rows import IndexRows
from hygeia.fhir.search.values import (
    CompositeValue,
    DateValue,
    InValue,
    OfTypeValue,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    SearchValue,
    StringValue,
    TokenValue,
    UriValue,
)

TOP = "\U0010ffff"
DAY = 86_400_000_000


@dataclass
class MatchContext:
    """Resources a chain or ``_has`` may reach, by (type, id)."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    registry: SearchRegistry | None = None
    _rows: dict[tuple[str, str], IndexRows] = field(default_factory=dict)

    def add(self, resource: dict[str, Any]) -> None:
        self.resources[(resource["resourceType"], resource["id"])] = resource

    def rows(self, resource: dict[str, Any]) -> IndexRows:
        key = (resource.get("resourceType", ""), resource.get("id", ""))
        if key not in self._rows:
            self._rows[key] = index_resource(resource, self.registry, complete=True)
        return self._rows[key]


def matches(query: Query, resource: dict[str, Any], context: MatchContext | None = None) -> bool:
    """True when ``resource`` satisfies every clause of ``query``."""
    types = query.types or (query.resource_type,)
    if resource.get("resourceType") not in types:
        return False
    context = context or MatchContext()
    return all(clause_matches(clause, resource, context) for clause in query.clauses)


def clause_matches(clause: Clause, resource: dict[str, Any], context: MatchContext) -> bool:
    if isinstance(clause, IdClause):
        return resource.get("id") in clause.ids
    if isinstance(clause, ChainClause):
        return _chain(clause, resource, context)
    if isinstance(clause, HasClause):
        return _has(clause, resource, context)
    if isinstance(clause, CompartmentClause):
        return _compartment(clause, resource, context)
    return _parameter(clause, resource, context.rows(resource))


def _compartment(clause: CompartmentClause, resource: dict[str, Any],
                 context: MatchContext) -> bool:
    owner = (clause.owner_type, clause.owner_id)
    if (resource.get("resourceType"), resource.get("id")) == owner:
        return True
    return any(param in clause.params and (kind, id) == owner
               for param, kind, id, _, _ in context.rows(resource).references)


def _chain(clause: ChainClause, resource: dict[str, Any], context: MatchContext) -> bool:
    rows = context.rows(resource)
    for param, kind, id, _, _ in rows.references:
        if param != clause.parameter.code or kind is None or id is None:
            continue
        target = context.resources.get((kind, id))
        if target is None:
            continue
        if any(kind == alt_type and clause_matches(inner, target, context)
               for alt_type, inner in clause.alternatives):
            return True
    return False


def _has(clause: HasClause, resource: dict[str, Any], context: MatchContext) -> bool:
    own = (resource.get("resourceType"), resource.get("id"))
    for (kind, _), source in context.resources.items():
        if kind != clause.source_type:
            continue
        pointing = any(param == clause.parameter.code and (target_type, target_id) == own
                       for param, target_type, target_id, _, _ in context.rows(source).references)
        if pointing and clause_matches(clause.inner, source, context):
            return True
    return False


def _parameter(clause: ParameterClause, resource: dict[str, Any], rows: IndexRows) -> bool:
    code, modifier = clause.parameter.code, clause.modifier
    if code == "_lastUpdated":
        return _last_updated(clause, resource)
    candidates = _rows_for(clause, rows)
    if clause.missing is not None:
        return not candidates if clause.missing else bool(candidates)
    if clause.parameter.type == "composite":
        return any(_composite(value, clause, candidates) for value in clause.values)
    found = any(_value_matches(value, modifier, row) for value in clause.values
                for row in candidates)
    return not found if modifier in ("not", "not-in") else found


def _rows_for(clause: ParameterClause, rows: IndexRows) -> list[tuple[Any, ...]]:
    code, modifier, kind = clause.parameter.code, clause.modifier, clause.parameter.type
    if modifier == "text":
        return [row[1:] for row in rows.token_texts if row[0] == code]
    if modifier in ("of-type", "identifier"):
        return [row[1:] for row in rows.tokens if row[0] == f"{code}:{modifier}"]
    tables: dict[str, Iterable[tuple[Any, ...]]] = {
        "string": rows.strings, "token": rows.tokens, "reference": rows.references,
        "date": rows.dates, "number": rows.numbers, "quantity": rows.quantities,
        "uri": rows.uris, "composite": rows.composites}
    source = tables.get(kind, [])
    return [row[1:] for row in source if row[0] == code]


def _value_matches(value: SearchValue, modifier: str | None, row: tuple[Any, ...]) -> bool:
    check = _CHECKS.get(type(value))
    if check is None:
        raise BadRequest(f"Cannot match {type(value).__name__}.", code="not-supported")
    return check(value, modifier, row)


def _string(value: Any, modifier: str | None, row: tuple[Any, ...]) -> bool:
    if modifier == "text":
        return str(row[0]).startswith(value.norm)
    norm, exact = row
    if modifier == "exact":
        return bool(exact == value.text)
    if modifier == "contains":
        return value.norm in norm
    return bool(norm.startswith(value.norm))


def _token(value: Any, modifier: str | None, row: tuple[Any, ...]) -> bool:
    system, code = row
    if value.code is not None and code != value.code:
        return False
    if value.system == "":
        return system is None
    return value.system is None or system == value.system


def _in(value: Any, modifier: str | None, row: tuple[Any, ...]) -> bool:
    """A ``code`` element carries no system: its binding implies it, so match the code alone."""
    system, code = row
    if system is None:
        return any(code == member for _, member in value.codes)
    return (system, code) in value.codes


def _of_type(value: Any, modifier: str | None, row: tuple[Any, ...]) -> bool:
    return bool(row == (value.system, f"{value.code}|{value.value}"))


def _range(value: Any, modifier: str | None, row: tuple[Any, ...]) -> bool:
    if isinstance(value, QuantityValue):
        low, high, system, code, unit = row
        return _units(value, system, code, unit) and _number_range(value, low, high)
    if isinstance(value, DateValue):
        return _stored_range(value, row[0], row[1])
    return _number_range(value, row[0], row[1])


def _units(value: QuantityValue, system: Any, code: Any, unit: Any) -> bool:
    if value.system is not None and system != value.system:
        return False
    if value.code is None:
        return True
    return bool(code == value.code) if value.system is not None else value.code in (code, unit)


def _stored_range(value: Any, low: int, high: int) -> bool:
    sl, sh = int(value.low), int(value.high)
    eq = low >= sl and high <= sh
    prefix = value.prefix
    tests: dict[str, Callable[[], bool]] = {
        "eq": lambda: eq, "ne": lambda: not eq, "gt": lambda: high > sh, "lt": lambda: low < sl,
        "ge": lambda: high > sh or eq, "le": lambda: low < sl or eq,
        "sa": lambda: low >= sh, "eb": lambda: high <= sl,
    }
    if prefix in tests:
        return tests[prefix]()
    slack = max((sh - sl) // 10, DAY)
    return low < sh + slack and high > sl - slack


def _number_range(value: Any, low: float, high: float) -> bool:
    """Stored closed [low, high] (a point when equal) against a prefixed search number.

    ``eq``: the search value's precision range [sl, sh) contains the stored range;
    ``gt``/``ge``: the stored range reaches above (or to) the exact search value,
    ``lt``/``le`` below it; ``sa``/``eb``: it lies wholly above/below it; ``ap``:
    it overlaps the value +- 10%.  For a point these are the plain comparisons.
    """
    prefix, number = value.prefix, value.value
    if prefix in ("eq", "ne"):
        contained = value.low <= low and high < value.high
        return bool(contained) if prefix == "eq" else not contained
    tests: dict[str, Callable[[], bool]] = {
        "gt": lambda: high > number, "ge": lambda: high >= number,
        "lt": lambda: low < number, "le": lambda: low <= number,
        "sa": lambda: low > number, "eb": lambda: high < number,
    }
    if prefix in tests:
        return tests[prefix]()
    slack = abs(number) * 0.1
    return bool(low <= number + slack and high >= number - slack)


def _reference(value: Any, modifier: str | None, row: tuple[Any, ...]) -> bool:
    kind, id, url = row[0], row[1], row[2]
    local = (value.type is None or kind == value.type) and (value.id is None or id == value.id)
    has_local = value.type is not None or value.id is not None
    if value.url is None:
        return has_local and local
    return url == value.url or (has_local and local)


def _uri(value: Any, modifier: str | None, row: tuple[Any, ...]) -> bool:
    uri = row[0]
    if modifier == "below":
        return bool(value.uri <= uri < value.uri + TOP)
    if modifier == "above":
        return bool(value.uri[:len(uri)] == uri)
    return bool(uri == value.uri)


def _composite(value: SearchValue, clause: ParameterClause, rows: list[tuple[Any, ...]]) -> bool:
    assert isinstance(value, CompositeValue)
    groups: dict[int, dict[int, list[tuple[Any, ...]]]] = {}
    for group, component, values in rows:
        groups.setdefault(group, {}).setdefault(component, []).append(tuple(values))
    for components in groups.values():
        if all(any(_component_matches(part, kind.type, row) for row in components.get(i, []))
               for i, (part, kind) in enumerate(zip(value.parts, clause.parameter.components,
                                                    strict=True))):
            return True
    return False


def _component_matches(part: SearchValue, kind: str, row: tuple[Any, ...]) -> bool:
    if kind == "reference":
        row = (*row, None)[:3]
    return _value_matches(part, None, row)


def _last_updated(clause: ParameterClause, resource: dict[str, Any]) -> bool:
    stamp = (resource.get("meta") or {}).get("lastUpdated")
    if clause.missing is not None:
        return (stamp is None) == clause.missing
    if not isinstance(stamp, str):
        return False
    low = fhir_datetime_range(stamp)[0]
    return any(_stored_range(value, low, low + 1) for value in clause.values)


_CHECKS: dict[type, Callable[[Any, str | None, tuple[Any, ...]], bool]] = {
    StringValue: _string, TokenValue: _token, OfTypeValue: _of_type, InValue: _in,
    RangeValue: _range, DateValue: _range, QuantityValue: _range, ReferenceValue: _reference,
    UriValue: _uri,
}
