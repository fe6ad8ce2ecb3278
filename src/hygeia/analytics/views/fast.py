"""Direct evaluation of the simple path shapes that make up most view columns.

Most columns of real views are member paths with a few functions
(``subject.getReferenceKey(Patient)``, ``value.ofType(Quantity).value``,
``code.coding.first().code``); walking the resource's JSON for them is some twenty
times faster than the general engine (fhirpathpy), which builds a typed node per
element. :func:`fast_path` compiles an expression made only of

- member names (lower case first: a leading type name is a filter, left to the engine),
- ``ofType(T)`` right after a member (the choice element ``memberT``),
- ``first()``, ``exists()``, ``empty()``, ``getResourceKey()``,
  ``getReferenceKey()`` and ``getReferenceKey(T)``,

and returns None for anything else. A compiled path raises :class:`Slow` when the
data needs what only the engine knows: a choice element named without ``ofType``,
a primitive with an extension (``_birthDate``), a null in an array; the caller then
evaluates that resource with the engine, so results never differ between the two.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

FastPath = Callable[[Any], list[Any]]
_MEMBER = re.compile(r"[a-z][A-Za-z0-9_]*")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_KEYWORDS = frozenset({"true", "false", "and", "or", "xor", "implies", "div", "mod", "in",
                       "contains", "as", "is"})


class Slow(Exception):
    """This resource needs the general engine for this expression."""


def _steps(expression: str) -> list[str] | None:
    """The steps between the dots outside parentheses, or None when one is empty; a
    step that is not one of the simple shapes is refused by :func:`fast_path`."""
    steps, depth, start = [], 0, 0
    for index, char in enumerate(expression):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "." and depth == 0:
            steps.append(expression[start:index])
            start = index + 1
    steps.append(expression[start:])
    return steps if all(steps) else None


@cache
def _choice_names() -> frozenset[str]:
    """Every name that is the base of a choice element somewhere in R4 (``value``,
    ``effective``, ``deceased``...): only these can hide behind ``nameType`` keys."""
    from fhirpathpy.models import models

    return frozenset(path.rsplit(".", 1)[1] for path in models["r4"]["choiceTypePaths"])


def _member(name: str) -> Callable[[list[Any]], list[Any]]:
    hidden = "_" + name
    choice = name in _choice_names()

    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:  # type() is, not isinstance: parsed JSON has no subclasses
            if type(item) is not dict:
                continue
            value = item.get(name)
            if hidden in item:
                raise Slow
            if value is None:
                if name in item or (choice and any(
                    key.startswith(name) and key[len(name):len(name) + 1].isupper()
                    for key in item
                )):
                    raise Slow  # a null, or a choice element named by its base
                continue
            if type(value) is list:
                if None in value:
                    raise Slow
                out.extend(value)
            else:
                out.append(value)
        return out

    return step


def _of_type(name: str, type_name: str) -> Callable[[list[Any]], list[Any]]:
    key = name + type_name[0].upper() + type_name[1:]
    hidden = "_" + key

    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is not dict:
                continue
            if name in item or hidden in item:
                raise Slow  # not a choice element (e.g. contained.ofType(Patient))
            value = item.get(key)
            if value is None:
                continue
            if type(value) is list:
                raise Slow
            out.append(value)
        return out

    return step


def _resource_key(items: list[Any]) -> list[Any]:
    return [f"{r['resourceType']}/{r['id']}" for r in items
            if isinstance(r, dict) and "id" in r and "resourceType" in r]


def reference_keys(type_name: str | None) -> Callable[[list[Any]], list[Any]]:
    """``getReferenceKey([type])``: ``Type/id`` of each reference (of that type)."""

    def keys(items: list[Any]) -> list[Any]:
        found = []
        for reference in items:
            text = reference.get("reference") if isinstance(reference, dict) else None
            if not isinstance(text, str):
                continue
            parts = text.split("/")
            if len(parts) < 2:
                continue
            kind, id = parts[-2], parts[-1]
            if "/_history/" in text and len(parts) >= 4:
                kind, id = parts[-4], parts[-3]
            if type_name is None or kind == type_name:
                found.append(f"{kind}/{id}")
        return found

    return keys


_FUNCTIONS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "first()": lambda items: items[:1],
    "exists()": lambda items: [bool(items)],
    "empty()": lambda items: [not items],
    "getResourceKey()": _resource_key,
    "getReferenceKey()": reference_keys(None),
}


def fast_path(expression: str) -> FastPath | None:
    """The expression as a direct walk over JSON, or None when it is not a simple path
    (module docstring). The walk takes a resource (or element) as parsed JSON, or a
    list of them, and returns the result as plain JSON values."""
    steps = _steps(expression.strip())
    if steps is None:
        return None
    compiled: list[Callable[[list[Any]], list[Any]]] = []
    previous: str | None = None
    for step in steps:
        call = re.fullmatch(r"(ofType|getReferenceKey)\(([^()]*)\)", step)
        if step in _FUNCTIONS:
            compiled.append(_FUNCTIONS[step])
            previous = None
        elif call and call.group(1) == "getReferenceKey" and _TYPE.fullmatch(call.group(2)):
            compiled.append(reference_keys(call.group(2)))
            previous = None
        elif call and call.group(1) == "ofType" and previous is not None \
                and _TYPE.fullmatch(call.group(2)):
            compiled[-1] = _of_type(previous, call.group(2))
            previous = None
        elif _MEMBER.fullmatch(step) and step not in _KEYWORDS:
            compiled.append(_member(step))
            previous = step
        else:
            return None

    def evaluate(context: Any) -> list[Any]:
        if type(context) is dict:
            items = [context]
        else:  # the engine's typed items (a forEach it ran), or a list of them
            items = context if isinstance(context, list) else [context]
            items = [getattr(item, "data", item) for item in items]
        for function in compiled:
            items = function(items)
        return items

    return evaluate
