"""Locate the elements a FHIRPath Patch path selects, with their containers.

A patch must change elements *in place*, so evaluating FHIRPath to values is
not enough: we need each element's container and key.  A path is first
checked against the FHIRPath grammar (400 when it is not FHIRPath at all);
then its steps are navigated here:

* ``Patient.name``, ``Patient.name.given``: child navigation, flattening
  lists; choice elements by their base name (``Observation.value``)
* ``[n]``, ``first()``, ``last()``: on the collection so far, as in FHIRPath
* ``where(criteria)``: FHIRPath criteria, evaluated by fhirpathpy on each
  element (``where(family = 'A' or given = 'B')``, ``where(period.exists())``).
  The criteria see only the element (no ``%resource``), and may use the
  functions of :data:`CRITERIA_FUNCTIONS`, whose cost grows no faster than
  the element: ``descendants()``, ``repeat()``, ``matches()`` (regular
  expressions), ``|`` and ``~`` could make one evaluation take minutes.
* ``extension('url')`` and ``ofType(Type)``

A valid FHIRPath step outside this list (``skip(1)``, ``|``, ``resolve()``)
is refused with 422 rather than guessed at, and the elements visited by one
patch's paths are counted against :attr:`PatchLimits.max_path_visits`.

>>> nodes = locate({"resourceType": "Patient", "name": [{"family": "A"}]}, "Patient.name[0].family")
>>> nodes[0].value
'A'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hygeia.fhir.outcome import BadRequest, Unprocessable
from hygeia.fhir.patch.budget import PatchBudget, PatchLimits, json_size
from hygeia.fhir.spec import type_definitions

MAX_PATH_CHARS = 4096
ROOT = "$"  # the key under which the resource itself is held
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\[\s*(\d{1,9})\s*\]")
_SUPPORTED = ("element names, [n], first(), last(), where(criteria), extension('url'), "
              "ofType(Type)")
CRITERIA_FUNCTIONS = frozenset({
    "where", "select", "exists", "empty", "not", "all", "allTrue", "anyTrue", "allFalse",
    "anyFalse", "count", "first", "last", "single", "tail", "skip", "take", "ofType", "is",
    "as", "iif", "hasValue", "extension", "children", "startsWith", "endsWith", "contains",
    "lower", "upper", "length", "substring", "indexOf", "trim", "toString", "toInteger",
    "toDecimal", "toBoolean", "toDate", "toDateTime", "toTime", "toQuantity", "today", "now",
    "abs", "ceiling", "floor", "round", "truncate",
})
_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


@dataclass(frozen=True, slots=True)
class Element:
    """What the spec says about one child element of a type."""

    key: str
    type: str | None
    repeats: bool
    choices: dict[str, str] | None


@dataclass(slots=True)
class Node:
    """One located element: ``container[key]`` or ``container[key][index]``.

    ``choice`` is the element's base name when ``key`` is one type of a choice
    (``value`` for ``valueQuantity``).
    """

    container: dict[str, Any]
    key: str
    index: int | None
    type: str | None
    choice: str | None = None

    @property
    def value(self) -> Any:
        value = self.container[self.key]
        return value if self.index is None else value[self.index]

    @property
    def is_resource(self) -> bool:
        """True for the patched resource itself (the path was just its type)."""
        return self.key == ROOT


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


def locate(resource: dict[str, Any], path: str,
           budget: PatchBudget | None = None) -> list[Node]:
    """Evaluate ``path`` against ``resource`` and return the nodes it selects."""
    check_syntax(path)
    steps = _split_steps(path)
    root = resource.get("resourceType")
    if not steps or steps[0] != root:
        raise BadRequest(f"Patch path '{path}' must start with the resource type {root}.",
                         expression="path")
    budget = budget or PatchBudget(PatchLimits(), 0)
    nodes = [Node({ROOT: resource}, ROOT, None, str(root))]
    for step in steps[1:]:
        budget.visit(len(nodes))
        nodes = _apply_step(nodes, step, path, resource, budget)
    return nodes


def split_parent(path: str) -> tuple[str, str]:
    """``Patient.name.given`` -> (``Patient.name``, ``given``); the last step must be a name."""
    steps = _split_steps(path)
    last = steps[-1] if steps else ""
    if len(steps) < 2 or not _NAME.fullmatch(last):
        raise Unprocessable(f"Patch path '{path}' must end with the name of a repeating "
                            "element.", expression="path")
    return path[: path.rstrip().rfind(last)].rstrip().rstrip("."), last


def check_syntax(path: str) -> None:
    """400 unless ``path`` is a FHIRPath expression (the grammar of fhirpathpy's parser)."""
    if len(path) > MAX_PATH_CHARS:
        raise BadRequest(f"Patch paths are limited to {MAX_PATH_CHARS} characters.",
                         expression="path")
    problem = _syntax_error(path)
    if problem:
        raise BadRequest(f"Patch path '{path}' is not a FHIRPath expression: {problem}.",
                         expression="path")


@lru_cache(maxsize=256)
def _syntax_error(text: str) -> str | None:
    # fhirpathpy's own parser module, with the ANTLR runtime it star-imports (so the
    # runtime stays fhirpathpy's dependency, not ours)
    from fhirpathpy.parser import (  # type: ignore[attr-defined]
        CommonTokenStream,
        ErrorListener,
        FHIRPathLexer,
        FHIRPathParser,
        InputStream,
    )

    class Raising(ErrorListener):
        def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int,
                        message: str, error: Any) -> None:
            raise ValueError(f"at column {column + 1}, {message}")

    lexer = FHIRPathLexer(InputStream(text))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(Raising())
    try:
        parser.entireExpression()
    except ValueError as error:
        return str(error)
    except RecursionError:
        return "it is nested too deeply"
    return None


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


def _apply_step(nodes: list[Node], step: str, path: str, resource: dict[str, Any],
                budget: PatchBudget | None) -> list[Node]:
    index = _INDEX.fullmatch(step)
    if index:
        position = int(index.group(1))
        return nodes[position:position + 1]
    if step == "first()":
        return nodes[:1]
    if step == "last()":
        return nodes[-1:]
    argument = _call_argument(step)
    if argument is not None:
        function, text = argument
        if function == "where":
            return _where(nodes, text, path, resource, budget)
        if function == "extension":
            url = _string_literal(text, step, path)
            return [child for node in nodes for child in _children(node, "extension")
                    if isinstance(child.value, dict) and child.value.get("url") == url]
        if function == "ofType":
            return [node for node in nodes if node.type == text.strip()]
    if _NAME.fullmatch(step):
        return [child for node in nodes for child in _children(node, step)]
    raise Unprocessable(f"Patch path '{path}' uses '{step}', which Hygeia does not support in "
                        f"patch paths (supported: {_SUPPORTED}).", code="not-supported",
                        expression="path")


def _call_argument(step: str) -> tuple[str, str] | None:
    """``where(x = 1)`` -> (``where``, ``x = 1``) for the functions with an argument."""
    match = re.fullmatch(r"(where|extension|ofType)\s*\((.*)\)", step, re.DOTALL)
    return (match.group(1), match.group(2)) if match else None


def _string_literal(text: str, step: str, path: str) -> str:
    literal = text.strip()
    if len(literal) >= 2 and literal[0] == literal[-1] == "'":
        return literal[1:-1].replace("\\'", "'")
    raise Unprocessable(f"Patch path '{path}': {step} needs a 'string' argument.",
                        code="not-supported", expression="path")


def _children(node: Node, name: str) -> list[Node]:
    value = node.value
    if not isinstance(value, dict):
        return []
    info = element(node.type, name)
    key, child_type, choice = name, info.type if info else None, None
    if info and info.choices:
        present = [k for k in info.choices if k in value]
        if not present:
            return []
        key, child_type, choice = present[0], info.choices[present[0]], name
    if key not in value:
        return []
    child = value[key]
    if isinstance(child, list):
        return [Node(value, key, i, _type_of(item, child_type), choice)
                for i, item in enumerate(child)]
    return [Node(value, key, None, _type_of(child, child_type), choice)]


def _type_of(value: Any, declared: str | None) -> str | None:
    """A contained resource is navigated as its own type, not as ``Resource``."""
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return str(value["resourceType"])
    return declared


def _where(nodes: list[Node], criteria: str, path: str, resource: dict[str, Any],
           budget: PatchBudget | None) -> list[Node]:
    """Keep the nodes for which ``criteria`` is true, in FHIRPath's singleton rules:
    empty is false, one boolean is itself, one other item is true, several are an error."""
    evaluate = _compiled(criteria, path)
    kept = []
    for node in nodes:
        if budget is not None:
            budget.examine(json_size(node.value))
        result = _evaluate(evaluate, node, resource, criteria)
        if len(result) > 1:
            raise Unprocessable(f"Patch path '{path}': where({criteria}) gives {len(result)} "
                                "values for one element; it must give true or false.",
                                expression="path")
        if result and result[0] is not False:
            kept.append(node)
    return kept


def _evaluate(evaluate: Callable[..., list[Any]], node: Node, resource: dict[str, Any],
              criteria: str) -> list[Any]:
    from fhirpathpy.engine.nodes import ResourceNode

    context = {"resource": resource, "rootResource": resource}
    try:
        return evaluate(ResourceNode.create_node(node.value, node.type), context)
    except Exception as error:  # fhirpathpy raises bare exceptions for runtime errors
        raise Unprocessable(f"where({criteria}) could not be evaluated: {error}.",
                            expression="path") from None


def _compiled(criteria: str, path: str) -> Callable[..., list[Any]]:
    problem = _syntax_error(criteria)
    if problem:
        raise BadRequest(f"Patch path '{path}': where({criteria}) is not FHIRPath: {problem}.",
                         expression="path")
    unsupported = _costly_parts(criteria)
    if unsupported:
        raise Unprocessable(f"Patch path '{path}': where() criteria may not use "
                            f"{', '.join(unsupported)} in patches (they are costly or reach "
                            "beyond the element).", code="not-supported", expression="path")
    return _compile(criteria)


def _costly_parts(criteria: str) -> list[str]:
    """What ``criteria`` uses beyond :data:`CRITERIA_FUNCTIONS` and cheap operators."""
    code = _LITERAL.sub("''", criteria)
    parts = [f"{name}()" for name in _CALL.findall(code) if name not in CRITERIA_FUNCTIONS]
    parts += [f"'{sign}'" for sign in ("%", "|", "~") if sign in code]
    return sorted(set(parts))


@lru_cache(maxsize=256)
def _compile(criteria: str) -> Callable[..., list[Any]]:
    import fhirpathpy
    from fhirpathpy.models import models

    compiled: Callable[..., list[Any]] = fhirpathpy.compile(criteria, models["r4"])
    return compiled
