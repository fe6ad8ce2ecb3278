"""``extract_index``: run a resource type's plan over one resource."""

from __future__ import annotations

import weakref
from functools import lru_cache
from typing import Any

from hygeia.fhir.search.extract.dates import date_range
from hygeia.fhir.search.extract.plan import KeyedEntry, Runner, TypePlan, param_plan, type_plan
from hygeia.fhir.search.extract.references import (
    parse_reference,
    reference_canonical,
    reference_identifier,
    reference_reference,
    reference_resource,
)
from hygeia.fhir.search.extract.shared import filtered_parameters, shared_parameters
from hygeia.fhir.search.extract.text import clear_text_memo
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry, default_registry
from hygeia.fhir.search.rows import IndexRows
from hygeia.fhir.spec import is_resource_type

__all__ = ["clear_memos", "extract_index", "extract_parameter", "fallback_parameters", "invalidate"]

# kept out of the stored rows: stores answer them from their resource table
ANSWERED_BY_THE_RESOURCE_TABLE = ("_id", "_lastUpdated")

# registry -> (resource type, complete) -> (the for_type dict the plan was built from, plan)
_PLANS: weakref.WeakKeyDictionary[
    SearchRegistry, dict[tuple[str, bool], tuple[dict[str, SearchParameter], TypePlan]]
] = weakref.WeakKeyDictionary()


def extract_index(resource: dict[str, Any], registry: SearchRegistry | None = None, *,
                  complete: bool = False) -> IndexRows:
    """The de-duplicated index rows of the indexed parameters of the resource's type.

    Unless ``complete``, the rows are those a store keeps: shared parameters
    (:mod:`.shared`: rows that are the union of other parameters' rows) and
    ``_id``/``_lastUpdated`` (answered from the resource table) are skipped.
    Resources of an unknown type (or not objects) give empty rows; values that
    cannot be normalised are skipped, never raised on.
    """
    kind = resource.get("resourceType") if type(resource) is dict else None
    if type(kind) is not str or not is_resource_type(kind):
        return IndexRows()
    return _apply(_plan(registry or default_registry(), kind, complete), resource)


def extract_parameter(resource: dict[str, Any], param: SearchParameter) -> IndexRows:
    """The rows of one parameter only (for the in-memory matcher), de-duplicated."""
    kind = resource.get("resourceType") if type(resource) is dict else None
    if type(kind) is not str or not is_resource_type(kind):
        return IndexRows()
    return _apply(_parameter_plan(param, kind), resource)


def _apply(plan: TypePlan, resource: dict[str, Any]) -> IndexRows:
    """Walk the resource's top-level keys through the plan, then run the unkeyed parts."""
    rows = IndexRows()
    by_key = plan.by_key
    for key, value in resource.items():
        entries = by_key.get(key)
        if entries is None:
            continue
        nodes = value if type(value) is list else (value,)
        for rest, normalise, code in entries:
            for node in nodes if rest is None else rest(nodes):
                normalise(code, node, rows)
    for run in plan.runners:
        run(resource, rows)
    _deduplicate(rows)
    return rows


def fallback_parameters(registry: SearchRegistry | None = None) -> list[tuple[str, str]]:
    """(resource type, code) of every indexed parameter that needs the FHIRPath fallback."""
    registry = registry or default_registry()
    return [
        (kind, code)
        for kind in registry.types()
        for code, param in sorted(registry.for_type(kind).items())
        if param.indexed and param_plan(param, kind).fallback
    ]


def invalidate() -> None:
    """Forget every compiled plan (plans also refresh on their own after ``registry.add``)."""
    _PLANS.clear()
    param_plan.cache_clear()
    _parameter_plan.cache_clear()


def clear_memos() -> None:
    """Empty the value memos (date ranges, parsed references, normalised text).

    They only speed up values seen before; benchmarks clear them to measure
    extraction of new data.
    """
    date_range.cache_clear()
    parse_reference.cache_clear()
    clear_text_memo()


def _plan(registry: SearchRegistry, resource_type: str, complete: bool) -> TypePlan:
    parameters = registry.for_type(resource_type)
    plans = _PLANS.get(registry)
    if plans is None:
        plans = _PLANS[registry] = {}
    cached = plans.get((resource_type, complete))
    if cached is not None and cached[0] is parameters:
        return cached[1]
    skipped = set() if complete else {*shared_parameters(registry, resource_type),
                                       *ANSWERED_BY_THE_RESOURCE_TABLE}
    plan = type_plan({code: param for code, param in parameters.items()
                      if code not in skipped}, resource_type)
    narrowed = () if complete else tuple(filtered_parameters(registry, resource_type))
    if narrowed:  # their reference rows are another parameter's; their tokens stay
        plan = _identifiers_only(plan, frozenset(narrowed), parameters, resource_type)
    plans[(resource_type, complete)] = (parameters, plan)
    return plan


# normalisers that make reference rows only: a filtered parameter's entry using one is dropped
_REFERENCE_ROWS_ONLY = (reference_canonical, reference_resource)


def _identifiers_only(plan: TypePlan, codes: frozenset[str],
                      parameters: dict[str, SearchParameter], resource_type: str) -> TypePlan:
    """``plan`` making none of the reference rows of the filtered parameters ``codes``.

    Their keyed entries extract only the ``:identifier`` token rows
    (:func:`reference_identifier`), or nothing when they could make no other row, so
    Observation ``patient`` no longer parses ``subject`` a second time.  Rows made
    where that cannot be told (a runner of such a parameter, another normaliser)
    are still dropped afterwards, as before.
    """
    by_key: dict[str, tuple[KeyedEntry, ...]] = {}
    unknown = False
    for key, entries in plan.by_key.items():
        kept = []
        for rest, normalise, code in entries:
            if code in codes:
                if normalise is reference_reference:
                    normalise = reference_identifier
                elif normalise in _REFERENCE_ROWS_ONLY:
                    continue
                else:
                    unknown = True
            kept.append((rest, normalise, code))
        if kept:
            by_key[key] = tuple(kept)
    unknown = unknown or any(param_plan(parameters[code], resource_type).runners
                             for code in codes if code in parameters)
    runners = (*plan.runners, _drop_references(codes)) if unknown else plan.runners
    return TypePlan(by_key, runners)


def _drop_references(codes: frozenset[str]) -> Runner:
    def drop(resource: dict[str, Any], rows: IndexRows) -> None:
        if rows.references:
            rows.references = [row for row in rows.references if row[0] not in codes]

    return drop


@lru_cache(maxsize=1024)
def _parameter_plan(param: SearchParameter, resource_type: str) -> TypePlan:
    return type_plan({param.code: param}, resource_type)


# Where repeats really occur (Synthea: 39% of token texts, as CodeableConcept.text repeats
# a display; a few strings; 2 tokens in 53,000; nothing else).  A repeated row is
# harmless to every query (they test existence), so the other lists are not hashed.
_MAY_REPEAT = ("token_texts", "strings", "tokens")


def _deduplicate(rows: IndexRows) -> None:
    """Drop repeated rows where they are common, so the store does not keep them twice."""
    for name in _MAY_REPEAT:
        values = getattr(rows, name)
        if len(values) > 1:
            values[:] = dict.fromkeys(values)
