"""Runtime navigation: a branch's operations as one function over node lists.

Each operation maps a list of JSON nodes to a list of JSON nodes, flattening
arrays as FHIRPath does.  Nodes that are not what the operation expects (a
string where an object should be) are dropped, never raised on: the input may
be any JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hygeia.fhir.search.extract.paths import Equals, Key, Nth, Op, ResourceIs, TargetIs
from hygeia.fhir.search.extract.references import target_type

__all__ = ["Getter", "build_getter"]

Getter = Callable[[Sequence[Any]], list[Any]]


def build_getter(ops: Sequence[Op]) -> Getter | None:
    """One function applying ``ops`` in order; None when there is nothing to apply."""
    steps = [_step(op) for op in ops]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]
    first, *others = steps

    def chain(nodes: Sequence[Any]) -> list[Any]:
        result = first(nodes)
        for step in others:
            if not result:
                return result
            result = step(result)
        return result

    return chain


def _step(op: Op) -> Getter:
    if isinstance(op, Key):
        return _key(op.name)
    if isinstance(op, Nth):
        position = op.position
        return lambda nodes: list(nodes[position : position + 1])
    if isinstance(op, Equals):
        return _equals(op.field, op.value)
    if isinstance(op, TargetIs):
        wanted = op.type_name
        return lambda nodes: [node for node in nodes if target_type(node) == wanted]
    if isinstance(op, ResourceIs):
        return _equals("resourceType", op.type_name)
    raise TypeError(f"unknown operation {op!r}")  # pragma: no cover


def _key(name: str) -> Getter:
    def key(nodes: Sequence[Any]) -> list[Any]:
        found: list[Any] = []
        for node in nodes:
            if type(node) is dict:
                value = node.get(name)
                if value is not None:
                    if type(value) is list:
                        found.extend(value)
                    else:
                        found.append(value)
        return found

    return key


def _equals(field: str, value: str) -> Getter:
    return lambda nodes: [node for node in nodes if type(node) is dict and node.get(field) == value]
