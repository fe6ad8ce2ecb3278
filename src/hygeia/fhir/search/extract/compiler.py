"""Compile a SearchParameter's expression, for one resource type, into extractors.

An expression becomes a list of :class:`Member` extractors: the typed branches
of :mod:`.paths` (the fast, usual case), a presence test (``deceased``), or a
fhirpathpy evaluator for a union member the compiler refuses.  Members whose
root names another resource type are dropped, so ``clinical-code``
(``AllergyIntolerance.code | Condition.code | ...``) compiled for Condition is
just ``Condition.code``.

Compilation costs a few milliseconds per resource type and is cached by the
callers (:mod:`.plan`, :func:`compile_parameter`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hygeia.fhir.search.extract.expression import (
    RESOURCE_ROOTS,
    Path,
    PresenceTest,
    Unsupported,
    parse_expression,
    root_name,
    split_union,
)
from hygeia.fhir.search.extract.fallback import Evaluator, fallback_evaluator
from hygeia.fhir.search.extract.navigate import Getter, build_getter
from hygeia.fhir.search.extract.paths import Key, expand
from hygeia.fhir.search.parameters import SearchParameter
from hygeia.fhir.spec import is_resource_type

__all__ = ["Member", "compile_members", "compile_parameter", "member_values"]

Extractor = Callable[[dict[str, Any]], list[tuple[Any, str]]]


@dataclass(frozen=True, slots=True)
class Member:
    """One compiled union member.

    ``type`` is the FHIR type of every value, or None when ``evaluate`` is set
    (fallback: values come with their own type).  ``key`` is the first JSON key
    read from the start node, so extraction can skip members whose key the
    resource lacks; ``rest`` applies the remaining operations to the values
    under that key and ``full`` all of them to ``[start]``.  ``source`` says
    what the member computes (its operations, or its FHIRPath text), so equal
    members of different parameters can share one evaluation.
    """

    type: str | None
    key: str | None = None
    rest: Getter | None = None
    full: Getter | None = None
    evaluate: Evaluator | None = None
    from_resource: bool = False
    fallback: bool = False
    source: object = None


def compile_members(
    expression: str, context_type: str, param_type: str, *, resource_type: str | None = None
) -> list[Member]:
    """Members of ``expression`` evaluated from a node of ``context_type``.

    With ``resource_type`` None the context is the resource itself and members
    rooted at another resource type are dropped; otherwise the context is a
    composite's root node (``Observation.component``) inside a ``resource_type``.
    """
    resource = resource_type or context_type
    members: list[Member] = []
    for text in split_union(expression):
        if resource_type is None and not _applies(root_name(text), context_type):
            continue
        try:
            parsed = parse_expression(text)
        except Unsupported:
            members.append(_fallback(text, param_type))
            continue
        for path in parsed:
            if resource_type is None and not _applies(_root_of(path), context_type):
                continue
            try:
                members.extend(_typed(path, context_type, resource))
            except Unsupported:
                members.append(_fallback(text, param_type))
                break
    return members


def _applies(root: str, resource_type: str) -> bool:
    """A member applies unless it is rooted at a different resource type."""
    return root in (resource_type, "") or root in RESOURCE_ROOTS or not is_resource_type(root)


def _root_of(path: Path | PresenceTest) -> str:
    return (path.path if isinstance(path, PresenceTest) else path).root or ""


def _typed(path: Path | PresenceTest, context_type: str, resource_type: str) -> list[Member]:
    if isinstance(path, PresenceTest):
        return [_presence(_typed(path.path, context_type, resource_type))]
    start = resource_type if path.from_resource else context_type
    members = []
    for branch in expand(path, start):
        first = branch.ops[0] if branch.ops else None
        key = first.name if isinstance(first, Key) else None
        rest = build_getter(branch.ops[1:]) if key is not None else None
        members.append(
            Member(
                branch.type,
                key,
                rest,
                build_getter(branch.ops),
                from_resource=path.from_resource,
                source=(branch.ops, path.from_resource),
            )
        )
    return members


def _presence(inner: list[Member]) -> Member:
    """``X.exists() and X != false``: true when X has a value that is not ``false``."""

    def test(nodes: Sequence[Any]) -> list[Any]:
        values = [
            value
            for member in inner
            for node in nodes
            for value in member_values(member, node, node)
        ]
        return [bool(values) and not any(value is False for value, _ in values)]

    return Member("boolean", full=test, source=("presence", id(test)))


def _fallback(text: str, param_type: str) -> Member:
    return Member(
        None,
        evaluate=fallback_evaluator(text, param_type),
        fallback=True,
        source=("fhirpath", text),
    )


def member_values(member: Member, start: Any, resource: dict[str, Any]) -> list[tuple[Any, str]]:
    """(value, FHIR type) pairs of one member evaluated from ``start``."""
    origin = resource if member.from_resource else start
    if member.evaluate is not None:
        return member.evaluate(origin, resource)
    values = member.full([origin]) if member.full is not None else [origin]
    kind = member.type or "string"
    return [(value, kind) for value in values]


def compile_parameter(param: SearchParameter) -> Extractor:
    """The extractor of one parameter: ``resource -> [(value, FHIR type)]``.

    The values are what the expression selects (for a composite, its root
    nodes), before normalisation; members are compiled per resource type on
    first use.

    >>> from hygeia.fhir.search.parameters import default_registry
    >>> gender = compile_parameter(default_registry().get("Patient", "gender"))
    >>> gender({"resourceType": "Patient", "gender": "female"})
    [('female', 'code')]
    """
    return _extractor(param)


@lru_cache(maxsize=4096)
def _extractor(param: SearchParameter) -> Extractor:
    by_type: dict[str, list[Member]] = {}
    expression = param.expression or ""

    def extract(resource: dict[str, Any]) -> list[tuple[Any, str]]:
        kind = resource.get("resourceType") if type(resource) is dict else None
        if type(kind) is not str or not is_resource_type(kind):
            return []
        members = by_type.get(kind)
        if members is None:
            members = by_type[kind] = compile_members(expression, kind, param.type)
        return [pair for member in members for pair in member_values(member, resource, resource)]

    return extract
