"""Locate elements of a resource with the FHIRPath subset that patches use.

A patch must change elements *in place*, so evaluating FHIRPath to values is
not enough: we need each element's container and key.  Supported, which covers
the paths patches are written with in practice:

* ``Patient.name``, ``Patient.name.given`` (child navigation, flattening lists;
  choice elements by their base name: ``Observation.value``)
* ``name[0]`` indexers, ``first()``, ``last()``
* ``where(path = literal)`` joined with ``and``; literals are 'strings',
  numbers, ``true``/``false``.

Anything else is refused with a clear error rather than guessed at.

>>> nodes = locate({"resourceType": "Patient", "name": [{"family": "A"}]}, "Patient.name[0].family")
>>> nodes[0].value
'A'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.spec import type_definitions


@dataclass(frozen=True, slots=True)
class Element:
    """What the spec says about one child element of a type."""

    key: str
    type: str | None
    repeats: bool
    choices: dict[str, str] | None


@dataclass(slots=True)
class Node:
    """One located element: ``container[key]`` or ``container[key][index]``."""

    container: dict[str, Any]
    key: str
    index: int | None
    type: str | None

    @property
    def value(self) -> Any:
        value = self.container[self.key]
        return value if self.index is None else value[self.index]


def element(type_name: str | None, name: str) -> Element | None:
    """The child element ``name`` of ``type_name`` (None when the type has no such element)."""
    definition = type_definitions().get(type_name or "")
    if definition is None:
        return None
    for item in definition["elements"]:
        if item["n"] == name:
            target = item.get("t")
            type_code = target[0] if isinstance(target, list) else target
            return Element(name, type_code, item.get("max", 1) != 1, item.get("x"))
    return None


def locate(resource: dict[str, Any], path: str) -> list[Node]:
    """Evaluate ``path`` against ``resource`` and return the nodes it selects."""
    steps = _split_steps(path)
    root = resource.get("resourceType")
    if not steps or steps[0] != root:
        raise BadRequest(f"Patch path '{path}' must start with the resource type {root}.",
                         expression="path")
    holder = {"$": resource}
    nodes = [Node(holder, "$", None, str(root))]
    for step in steps[1:]:
        nodes = _apply_step(nodes, step, path)
    return nodes


def split_parent(path: str) -> tuple[str, str]:
    """``Patient.name.given`` -> (``Patient.name``, ``given``); the last step must be a name."""
    steps = _split_steps(path)
    last = steps[-1] if steps else ""
    if len(steps) < 2 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", last):
        raise BadRequest(f"Patch path '{path}' must end with an element name.",
                         expression="path")
    return path[: path.rstrip().rfind(last)].rstrip().rstrip("."), last


def _split_steps(path: str) -> list[str]:
    """Split at top-level dots and before indexers, keeping function calls whole."""
    steps: list[str] = []
    depth, current, quote = 0, "", False
    for char in path.strip():
        if char == "'" and (not current or current[-1] != "\\"):
            quote = not quote
        if not quote:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "." and depth == 0:
                steps.append(current.strip())
                current = ""
                continue
            elif char == "[" and depth == 0 and current:
                steps.append(current.strip())
                current = ""
        current += char
    steps.append(current.strip())
    if depth != 0 or quote or any(not step for step in steps):
        raise BadRequest(f"Patch path '{path}' is not a FHIRPath expression Hygeia understands.",
                         expression="path")
    return steps


def _apply_step(nodes: list[Node], step: str, path: str) -> list[Node]:
    if step.startswith("["):
        return _index(nodes, int(step.strip("[] ")))
    if step == "first()":
        return nodes[:1]
    if step == "last()":
        return nodes[-1:]
    if step.startswith("where(") and step.endswith(")"):
        condition = step[len("where("):-1]
        return [node for node in nodes if _where(node, condition, path)]
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", step):
        return [child for node in nodes for child in _children(node, step)]
    raise BadRequest(f"Patch path '{path}' uses '{step}', which Hygeia does not support in "
                     "patches (supported: names, [n], first(), last(), where(a = 'b')).",
                     expression="path")


def _index(nodes: list[Node], index: int) -> list[Node]:
    return nodes[index:index + 1]


def _children(node: Node, name: str) -> list[Node]:
    value = node.value
    if not isinstance(value, dict):
        return []
    info = element(node.type, name)
    key, child_type = name, info.type if info else None
    if info and info.choices:
        present = [k for k in info.choices if k in value]
        if not present:
            return []
        key, child_type = present[0], info.choices[present[0]]
    if key not in value:
        return []
    child = value[key]
    if isinstance(child, list):
        return [Node(value, key, i, child_type) for i in range(len(child))]
    return [Node(value, key, None, child_type)]


def _where(node: Node, condition: str, path: str) -> bool:
    for clause in re.split(r"\s+and\s+", condition):
        left, operator, right = clause.partition("=")
        if not operator or left.endswith(("!", "<", ">")):
            raise BadRequest(f"Patch path '{path}': where() supports only 'a = literal' "
                             "clauses joined by 'and'.", expression="path")
        literal = _literal(right.strip(), path)
        selected = [Node({"$": node.value}, "$", None, node.type)]
        for step in _split_steps(left.strip()):
            selected = _apply_step(selected, step, path)
        if not any(candidate.value == literal for candidate in selected):
            return False
    return True


def _literal(text: str, path: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("\\'", "'")
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    except ValueError:
        raise BadRequest(f"Patch path '{path}': '{text}' is not a literal.",
                         expression="path") from None
