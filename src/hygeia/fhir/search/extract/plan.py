"""Per-parameter and per-resource-type extraction plans (compiled once, then cached).

A :class:`ParamPlan` is what one parameter contributes for one resource type:
*keyed* entries (a top-level JSON key, the getter for the rest of the path, a
normaliser) and *runners* for what cannot be keyed (composites, presence
tests, fallbacks, the resource itself).  A :class:`TypePlan` merges the plans of
every indexed parameter of a type and indexes the keyed entries by key, so
extraction walks the keys a resource actually has instead of every parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hygeia.fhir.search.extract.compiler import Member, compile_members, member_values
from hygeia.fhir.search.extract.fallback import fallback_evaluator
from hygeia.fhir.search.extract.navigate import Getter
from hygeia.fhir.search.extract.normalisers import ROW_LISTS, Normaliser, normaliser_for
from hygeia.fhir.search.parameters import Component, SearchParameter
from hygeia.fhir.search.rows import IndexRows

__all__ = ["KeyedEntry", "ParamPlan", "Runner", "TypePlan", "param_plan", "type_plan"]

KeyedEntry = tuple[Getter | None, Normaliser, str]
Runner = Callable[[dict[str, Any], IndexRows], None]


@dataclass(slots=True)
class ParamPlan:
    keyed: list[tuple[str, KeyedEntry]] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)
    fallback: bool = False


@dataclass(slots=True)
class TypePlan:
    by_key: dict[str, tuple[KeyedEntry, ...]]
    runners: tuple[Runner, ...]


def type_plan(parameters: dict[str, SearchParameter], resource_type: str) -> TypePlan:
    """Merge the plans of every indexed parameter of ``resource_type``."""
    by_key: dict[str, list[KeyedEntry]] = {}
    runners: list[Runner] = []
    for param in parameters.values():
        if not param.indexed:
            continue
        plan = param_plan(param, resource_type)
        for key, entry in plan.keyed:
            by_key.setdefault(key, []).append(entry)
        runners.extend(plan.runners)
    return TypePlan({key: tuple(entries) for key, entries in by_key.items()}, tuple(runners))


@lru_cache(maxsize=8192)
def param_plan(param: SearchParameter, resource_type: str) -> ParamPlan:
    """What ``param`` contributes for ``resource_type`` (cached; parameters are immutable)."""
    if param.type == "composite":
        return _composite_plan(param, resource_type)
    plan = ParamPlan()
    for member in compile_members(param.expression or "", resource_type, param.type):
        plan.fallback |= member.fallback
        if member.type is None:
            plan.runners.append(_dynamic_runner(param.code, param.type, member))
            continue
        normalise = normaliser_for(param.type, member.type)
        if normalise is None:
            continue
        if member.key is not None:
            plan.keyed.append((member.key, (member.rest, normalise, param.code)))
        else:
            plan.runners.append(_static_runner(param.code, member, normalise))
    return plan


def _static_runner(code: str, member: Member, normalise: Normaliser) -> Runner:
    def run(resource: dict[str, Any], rows: IndexRows) -> None:
        for value, _ in member_values(member, resource, resource):
            normalise(code, value, rows)

    return run


def _dynamic_runner(code: str, param_type: str, member: Member) -> Runner:
    def run(resource: dict[str, Any], rows: IndexRows) -> None:
        for value, fhir_type in member_values(member, resource, resource):
            normalise = normaliser_for(param_type, fhir_type)
            if normalise is not None:
                normalise(code, value, rows)

    return run


# (member, normaliser or None for typed-at-runtime, row list name, component type)
_ComponentEntry = tuple[Member, Normaliser | None, str, str]


def _composite_plan(param: SearchParameter, resource_type: str) -> ParamPlan:
    """Roots from the composite's expression; components evaluated relative to each root."""
    roots = compile_members(param.expression or "", resource_type, "composite")
    compiled = [(root, [_component(component, root, resource_type)
                        for component in param.components]) for root in roots]
    fallback = any(member.fallback for _, comps in compiled for entries in comps
                   for member, *_ in entries) or any(root.fallback for root in roots)
    if not compiled or not param.components:
        return ParamPlan()
    return ParamPlan(runners=[_composite_runner(param.code, compiled)], fallback=fallback)


def _component(component: Component, root: Member, resource_type: str) -> list[_ComponentEntry]:
    rows = ROW_LISTS.get(component.type)
    if rows is None:
        return []
    if root.type is None:
        members = [Member(None, evaluate=fallback_evaluator(component.expression, component.type),
                          fallback=True)]
    else:
        members = compile_members(component.expression, root.type, component.type,
                                  resource_type=resource_type)
    entries: list[_ComponentEntry] = []
    for member in members:
        normalise = normaliser_for(component.type, member.type) if member.type else None
        if normalise is not None or member.type is None:
            entries.append((member, normalise, rows, component.type))
    return entries


def _composite_runner(code: str,
                      compiled: list[tuple[Member, list[list[_ComponentEntry]]]]) -> Runner:
    """Group numbers count the roots of this parameter in the resource, from 0."""
    def run(resource: dict[str, Any], rows: IndexRows) -> None:
        group = 0
        for root, components in compiled:
            for node, _ in member_values(root, resource, resource):
                for index, entries in enumerate(components):
                    _component_rows(code, group, index, entries, node, resource, rows)
                group += 1

    return run


def _component_rows(code: str, group: int, index: int, entries: list[_ComponentEntry],
                    node: Any, resource: dict[str, Any], rows: IndexRows) -> None:
    """Normalise one component's values into a scratch IndexRows and keep its main rows."""
    scratch = IndexRows()
    for member, normalise, attribute, component_type in entries:
        for value, fhir_type in member_values(member, node, resource):
            use = normalise or normaliser_for(component_type, fhir_type)
            if use is not None:
                use(code, value, scratch)
        produced: list[tuple[Any, ...]] = getattr(scratch, attribute)
        rows.composites.extend((code, group, index, row[1:]) for row in produced)
        produced.clear()
