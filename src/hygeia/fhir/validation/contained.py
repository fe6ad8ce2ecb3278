"""Contained resources and the local ``#id`` references that point at them.

Rules (references.html#contained, domainresource.html, datatypes.html#Reference):

- a contained resource has an id, contains nothing itself (dom-2) and carries
  no ``meta.versionId``/``meta.lastUpdated`` (dom-4) or security label (dom-5);
- ``#id`` must name a resource in the container's ``contained`` (ref-1);
  ``#`` alone points back at the container;
- each contained resource is referenced from elsewhere in the resource, or
  itself refers to the container (dom-3).

Local references can sit anywhere in a resource, so while a resource that
has ``contained`` is walked, a :class:`Scope` in a ContextVar collects them;
the walker only consults it for ``#`` references, which are rare, and
resources without ``contained`` never create one.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from hygeia.fhir.outcome import Issue
from hygeia.fhir.validation.paths import Location, child, issue
from hygeia.fhir.validation.primitives import shown


class Scope:
    """The contained ids of the resource being walked and which were referenced."""

    __slots__ = ("container_refs", "ids", "referenced")

    def __init__(self, ids: frozenset[str]) -> None:
        self.ids = ids
        self.referenced: set[str] = set()
        self.container_refs = 0


SCOPE: ContextVar[Scope | None] = ContextVar("hygeia_validation_scope", default=None)


def open_scope(resource: dict[str, Any]) -> Scope | None:
    """The scope for a (non-contained) resource: None when it contains nothing."""
    contained = resource.get("contained")
    if type(contained) is not list:
        return None
    ids = frozenset(
        item["id"] for item in contained if type(item) is dict and type(item.get("id")) is str
    )
    return Scope(ids)


def local_reference_problem(literal: str) -> tuple[str, str] | None:
    """ref-1 for a ``#...`` reference, recording it for dom-3; None when it resolves."""
    scope = SCOPE.get()
    target = literal[1:]
    if not target:
        if scope is not None:
            scope.container_refs += 1
        return None
    if scope is not None and target in scope.ids:
        scope.referenced.add(target)
        return None
    return "invariant", f"ref-1: {shown(literal)} does not match the id of a contained resource"


def check_contained(resource: dict[str, Any], location: Location, issues: list[Issue]) -> None:
    """Rules for a resource inside ``contained``: has an id, no nesting, no version or labels."""
    if "id" not in resource:
        issues.append(
            issue("required", "a contained resource must have an id", child(location, "id"))
        )
    if "contained" in resource:
        issues.append(
            issue(
                "invariant",
                "dom-2: a contained resource cannot contain resources",
                child(location, "contained"),
            )
        )
    meta = resource.get("meta")
    if type(meta) is dict:
        _check_contained_meta(meta, child(location, "meta"), issues)


def _check_contained_meta(meta: dict[str, Any], location: Location, issues: list[Issue]) -> None:
    for name in ("versionId", "lastUpdated"):
        if name in meta:
            issues.append(
                issue(
                    "invariant",
                    f"dom-4: a contained resource cannot have meta.{name}",
                    child(location, name),
                )
            )
    if "security" in meta:
        issues.append(
            issue(
                "invariant",
                "dom-5: a contained resource cannot have a security label",
                child(location, "security"),
            )
        )


def check_unreferenced(
    resource: dict[str, Any], scope: Scope, location: Location, issues: list[Issue]
) -> None:
    """dom-3: every contained resource is referenced, or refers to its container."""
    for index, item in enumerate(resource.get("contained") or ()):
        if type(item) is not dict:
            continue
        identity = item.get("id")
        if type(identity) is str and identity not in scope.referenced:
            issues.append(
                issue(
                    "invariant",
                    f"dom-3: contained resource #{identity} is not referenced from the rest of "
                    "the resource and does not refer to it",
                    child(location, "contained", index),
                )
            )
