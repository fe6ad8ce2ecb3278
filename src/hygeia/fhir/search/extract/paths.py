"""Resolve parsed paths against the R4 type definitions into typed, linear branches.

A path such as ``Observation.value`` names a choice element, so in JSON it is
one of eleven keys (``valueQuantity``, ``valueString``...), each with its own
FHIR type.  Resolving it at compile time turns the path into one *branch* per
concrete key sequence, each with a single known result type; ``as``/``ofType``
then simply drops the branches of other types, and the normaliser for each
branch is chosen once.  What only the data can decide (``[0]``,
``where(system='phone')``, ``where(resolve() is Patient)``) stays as runtime
operations on the branch.

>>> from hygeia.fhir.search.extract.expression import parse_expression
>>> path = parse_expression("Observation.value as Quantity")[0]
>>> [(branch.ops, branch.type) for branch in expand(path, "Observation")]
[((Key(name='valueQuantity'),), 'Quantity')]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from hygeia.fhir.search.extract.expression import (
    Child,
    Index,
    OfType,
    Path,
    Step,
    Unsupported,
    WhereEquals,
    WhereResolve,
)
from hygeia.fhir.spec import is_resource_type, primitive_types, type_definitions

__all__ = ["Branch", "Equals", "Key", "Nth", "Op", "ResourceIs", "TargetIs", "expand", "is_subtype"]

# Quantity's constrained specialisations (datatypes.html); FHIRPath ``as Quantity`` keeps them.
_QUANTITY_KINDS = frozenset(
    {"Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"}
)
# Primitive specialisations (FHIR's type hierarchy), for ``as string`` / ``as uri``...
_PRIMITIVE_BASES = {
    "code": "string",
    "id": "string",
    "markdown": "string",
    "url": "uri",
    "canonical": "uri",
    "oid": "uri",
    "uuid": "uri",
    "positiveInt": "integer",
    "unsignedInt": "integer",
}
RESOURCE = "Resource"


@dataclass(frozen=True, slots=True)
class Key:
    """Read a JSON key from every object node, flattening arrays."""

    name: str


@dataclass(frozen=True, slots=True)
class Nth:
    """Keep only the n-th node of the whole collection."""

    position: int


@dataclass(frozen=True, slots=True)
class Equals:
    """Keep object nodes whose ``field`` equals ``value``."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class TargetIs:
    """Keep references (or canonical URLs) whose target resource type is ``type_name``."""

    type_name: str


@dataclass(frozen=True, slots=True)
class ResourceIs:
    """Keep resource nodes (``Bundle.entry.resource``) of ``type_name``."""

    type_name: str


Op = Key | Nth | Equals | TargetIs | ResourceIs


@dataclass(frozen=True, slots=True)
class Branch:
    """A key sequence with runtime filters whose nodes all have FHIR type ``type``."""

    ops: tuple[Op, ...]
    type: str


def is_subtype(type_name: str, wanted: str) -> bool:
    """True when a node of ``type_name`` passes ``as wanted`` / ``ofType(wanted)``."""
    if type_name == wanted:
        return True
    if wanted == "Quantity" and type_name in _QUANTITY_KINDS:
        return True
    if wanted == RESOURCE and (type_name == RESOURCE or is_resource_type(type_name)):
        return True
    return _PRIMITIVE_BASES.get(type_name) == wanted


def expand(path: Path, context_type: str) -> list[Branch]:
    """Resolve ``path`` from a node of ``context_type`` into typed branches.

    Raises :class:`Unsupported` when the path needs runtime typing this
    compiler does not do (children of a ``Resource``-typed element, or an
    index across several choice branches).
    """
    branches = [Branch((), context_type)]
    for step in path.steps:
        branches = _apply(step, branches)
        if not branches:
            break
    return branches


def _apply(step: Step, branches: list[Branch]) -> list[Branch]:
    if isinstance(step, Child):
        return [child for branch in branches for child in _children(branch, step.name)]
    if isinstance(step, OfType):
        return _of_type(branches, step.type_name)
    if isinstance(step, Index):
        if len(branches) > 1:
            raise Unsupported("an index over several choice types needs runtime typing")
        return [_with(branch, Nth(step.position)) for branch in branches]
    if isinstance(step, WhereEquals):
        return [_with(branch, Equals(step.field, step.value)) for branch in branches]
    if isinstance(step, WhereResolve):
        return [_with(branch, TargetIs(step.type_name)) for branch in branches]
    raise Unsupported(f"step {step!r}")  # pragma: no cover - the parser makes no others


def _with(branch: Branch, op: Op, type_name: str | None = None) -> Branch:
    return Branch((*branch.ops, op), type_name or branch.type)


def _of_type(branches: list[Branch], wanted: str) -> list[Branch]:
    """Branches of type ``wanted``; its subtypes only when no branch has it exactly.

    ``ConceptMap.source[x]`` is uri or canonical, and the spec pairs
    ``source as canonical`` with ``source as uri`` meaning one choice each,
    although canonical specialises uri.
    """
    kept = [branch for branch in branches if branch.type == wanted]
    if not kept:
        kept = [branch for branch in branches if is_subtype(branch.type, wanted)]
    # An element typed Resource (contained, Bundle.entry.resource) is typed by its data.
    kept += [
        _with(branch, ResourceIs(wanted), wanted)
        for branch in branches
        if branch.type == RESOURCE and is_resource_type(wanted)
    ]
    return kept


def _children(branch: Branch, name: str) -> list[Branch]:
    """The branches for child ``name`` of a node of ``branch.type``."""
    if branch.type == RESOURCE:
        raise Unsupported("children of a Resource-typed element need runtime typing")
    element = _elements(branch.type).get(name)
    if element is None:
        return [
            _with(branch, Key(key), type_name) for key, type_name in _choice_key(branch.type, name)
        ]
    if "x" in element:
        return [
            _with(branch, Key(key), _type_code(declared)) for key, declared in element["x"].items()
        ]
    return [_with(branch, Key(name), _type_code(element.get("t")))]


def _type_code(declared: Any) -> str:
    """A compact type is a code, or [code, targets] for Reference/canonical."""
    code = declared[0] if isinstance(declared, list) else declared
    return code if isinstance(code, str) else "Element"


def _choice_key(type_name: str, key: str) -> list[tuple[str, str]]:
    """A concrete choice key used as a name (``Observation.valueQuantity``), if any."""
    for element in _elements(type_name).values():
        choice = element.get("x") or {}
        if key in choice:
            return [(key, _type_code(choice[key]))]
    return []


@cache
def _elements(type_name: str) -> dict[str, dict[str, Any]]:
    """Elements of a resource, datatype or backbone element by FHIRPath name."""
    if type_name in primitive_types():
        return {}
    definition = type_definitions().get(type_name)
    if definition is None:
        return {}
    return {element["n"]: element for element in definition["elements"]}
