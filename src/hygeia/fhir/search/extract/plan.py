"""Per-parameter and per-resource-type extraction plans (compiled once, then cached).

A :class:`ParamPlan` is what one parameter contributes for one resource type:
*keyed* entries (a top-level JSON key, the getter for the rest of the path, a
normaliser) and *runners* for what cannot be keyed (composites, presence
tests, fallbacks, the resource itself).  A :class:`TypePlan` merges the plans of
every indexed parameter of a type and indexes the keyed entries by key, so
extraction walks the keys a resource actually has instead of every parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hygeia.fhir.search.extract.compiler import Member, compile_members, member_values
from hygeia.fhir.search.extract.composites import CompositeSet, Runner
from hygeia.fhir.search.extract.navigate import Getter
from hygeia.fhir.search.extract.normalisers import Normaliser, normaliser_for
from hygeia.fhir.search.parameters import SearchParameter
from hygeia.fhir.search.rows import IndexRows

__all__ = ["KeyedEntry", "ParamPlan", "Runner", "TypePlan", "param_plan", "type_plan"]

KeyedEntry = tuple[Getter | None, Normaliser, str]


@dataclass(slots=True)
class ParamPlan:
    """One parameter for one type: keyed entries, runners, and whether any is a fallback."""

    keyed: list[tuple[str, KeyedEntry]] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)
    fallback: bool = False


@dataclass(slots=True)
class TypePlan:
    """Every parameter of one type: keyed entries by top-level key, then the runners."""

    by_key: dict[str, tuple[KeyedEntry, ...]]
    runners: tuple[Runner, ...]


def type_plan(parameters: dict[str, SearchParameter], resource_type: str) -> TypePlan:
    """Merge the plans of every indexed parameter of ``resource_type``.

    Composites are merged into one :class:`CompositeSet` so they share roots
    and component values.
    """
    by_key: dict[str, list[KeyedEntry]] = {}
    runners: list[Runner] = []
    composites: list[SearchParameter] = []
    for param in parameters.values():
        if not param.indexed:
            continue
        if param.type == "composite":
            composites.append(param)
            continue
        plan = param_plan(param, resource_type)
        for key, entry in plan.keyed:
            by_key.setdefault(key, []).append(entry)
        runners.extend(plan.runners)
    composite_runner = CompositeSet(composites, resource_type).runner()
    if composite_runner is not None:
        runners.append(composite_runner)
    return TypePlan({key: tuple(entries) for key, entries in by_key.items()}, tuple(runners))


@lru_cache(maxsize=8192)
def param_plan(param: SearchParameter, resource_type: str) -> ParamPlan:
    """What ``param`` contributes for ``resource_type`` (cached; parameters are immutable)."""
    if param.type == "composite":
        composites = CompositeSet([param], resource_type)
        runner = composites.runner()
        return ParamPlan(runners=[runner] if runner else [], fallback=composites.fallback)
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
