"""Lazy FHIRPath locations for validation issues.

Most resources are valid, so the walker never builds a path string up front.
It passes a chain of small tuples ``(parent, element name, index or None)``
ending in the root resource type, and only an issue turns the chain into text.

>>> render((("Observation", "component", 1), "valueQuantity", None))
'Observation.component[1].valueQuantity'
"""

from __future__ import annotations

from typing import Any, TypeAlias

from hygeia.fhir.outcome import Issue

Location: TypeAlias = "tuple[Any, str, int | None] | str"


def render(location: Location) -> str:
    """Turn a location chain into a FHIRPath expression such as ``Patient.name[0].given[1]``."""
    parts: list[str] = []
    node: Any = location
    while type(node) is tuple:
        parent, name, index = node
        parts.append(name if index is None else f"{name}[{index}]")
        node = parent
    parts.append(node)
    parts.reverse()
    return ".".join(part for part in parts if part)


def child(location: Location, name: str, index: int | None = None) -> Location:
    """The location of element ``name`` (item ``index`` if repeating) under ``location``."""
    return (location, name, index)


def issue(code: str, message: str, location: Location | None) -> Issue:
    """Build an Issue, rendering the location only now that something is wrong."""
    return Issue(code, message, render(location) if location is not None else None)
