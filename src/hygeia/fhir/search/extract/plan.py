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
from hygeia.fhir.search.extract.components import Tails, tails_for
from hygeia.fhir.search.extract.fallback import fallback_evaluator
from hygeia.fhir.search.extract.navigate import Getter
from hygeia.fhir.search.extract.normalisers import Normaliser, normaliser_for
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


# One way to reach a component's values: (key, rest, member, tails).  When ``key`` is set
# the values are node[key] then ``rest``; otherwise ``member`` is evaluated in full.
# ``tails`` None means typed at runtime (fallback).
_ComponentEntry = tuple[str | None, Getter | None, Member, Tails | None]


def _composite_plan(param: SearchParameter, resource_type: str) -> ParamPlan:
    """Roots from the composite's expression; components evaluated relative to each root."""
    roots = compile_members(param.expression or "", resource_type, "composite")
    compiled = [(root, [_component(component, root, resource_type)
                        for component in param.components]) for root in roots]
    fallback = any(root.fallback for root in roots) or any(
        entry[2].fallback for _, components in compiled for entries in components
        for entry in entries)
    if not compiled or not param.components:
        return ParamPlan()
    types = tuple(component.type for component in param.components)
    return ParamPlan(runners=[_composite_runner(param.code, compiled, types)], fallback=fallback)


def _component(component: Component, root: Member, resource_type: str) -> list[_ComponentEntry]:
    if root.type is None:
        return [(None, None, Member(None, evaluate=fallback_evaluator(
            component.expression, component.type), fallback=True), None)]
    entries: list[_ComponentEntry] = []
    for member in compile_members(component.expression, root.type, component.type,
                                  resource_type=resource_type):
        tails = tails_for(component.type, member.type) if member.type else None
        if member.type is not None and tails is None:
            continue
        keyed = member.key is not None and not member.from_resource
        entries.append((member.key if keyed else None, member.rest, member, tails))
    return entries


def _composite_runner(code: str, compiled: list[tuple[Member, list[list[_ComponentEntry]]]],
                      types: tuple[str, ...]) -> Runner:
    """Rows for the complete groups only: a group lacking a component can never match.

    Group numbers count the roots of this parameter in the resource, from 0.
    Components are evaluated last first because the value components
    (``value.as(Quantity)``) are the ones usually absent, which ends the group early.
    """
    order = list(range(len(types) - 1, -1, -1))

    def run(resource: dict[str, Any], rows: IndexRows) -> None:
        group = 0
        for root, components in compiled:
            for node, _ in member_values(root, resource, resource):
                found = []
                for index in order:
                    tails = _component_tails(components[index], types[index], node, resource)
                    if not tails:
                        break
                    found.append((index, tails))
                else:
                    rows.composites.extend((code, group, index, tail)
                                           for index, tails in reversed(found) for tail in tails)
                group += 1

    return run


def _component_tails(entries: list[_ComponentEntry], component_type: str, node: Any,
                     resource: dict[str, Any]) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    for key, rest, member, tails in entries:
        if key is not None and tails is not None:
            value = node.get(key) if type(node) is dict else None
            if value is None:
                continue
            nodes = value if type(value) is list else (value,)
            for item in nodes if rest is None else rest(nodes):
                found.extend(tails(item))
            continue
        for item, fhir_type in member_values(member, node, resource):
            use = tails or tails_for(component_type, fhir_type)
            if use is not None:
                found.extend(use(item))
    return found
