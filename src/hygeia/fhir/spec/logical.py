"""Resource types outside R4 (logical models such as SQL on FHIR's ViewDefinition).

A package declares one as a :class:`ResourceType` and names it in the
``hygeia.resource_types`` entry-point group of its metadata::

    [project.entry-points."hygeia.resource_types"]
    ViewDefinition = "hygeia.analytics.view_type:VIEW_DEFINITION"

The spec data (:mod:`hygeia.fhir.spec`) merges every installed declaration into
the R4 tables the first time they are read, so the type is known everywhere the
R4 types are, in every process alike: the serving processes, the loader's
workers, the offload helpers and the CLI's ``hygeia validate`` all start from
the same package metadata, and nothing has to hand the registration from one
process to the next. Once merged, the type is created, read, searched,
validated, scoped (``ViewDefinition.rs``), exported and listed in the
CapabilityStatement by the code that does so for R4 types.

The module that holds a declaration should import only ``hygeia.fhir``: every
process that reads the spec loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from hygeia.fhir.outcome import Issue

__all__ = ["GROUP", "ResourceType", "ResourceTypeError", "installed_resource_types"]

GROUP = "hygeia.resource_types"

# the elements every resource has, and those a DomainResource adds (R4 Resource and
# DomainResource, in the compact element format of tools/generate_spec.py)
RESOURCE_ELEMENTS: tuple[dict[str, Any], ...] = (
    {"n": "id", "s": 1, "t": "id"},
    {"n": "meta", "s": 1, "t": "Meta"},
    {"n": "implicitRules", "s": 1, "t": "uri"},
    {"n": "language", "t": "code"},
)
DOMAIN_ELEMENTS: tuple[dict[str, Any], ...] = (
    {"n": "text", "t": "Narrative"},
    {"max": "*", "n": "contained", "t": "Resource"},
    {"max": "*", "n": "extension", "t": "Extension"},
    {"max": "*", "n": "modifierExtension", "t": "Extension"},
)

BACKBONE_ELEMENTS: tuple[dict[str, Any], ...] = (
    {"attr": 1, "n": "id", "t": "string"},
    {"max": "*", "n": "extension", "t": "Extension"},
    {"max": "*", "n": "modifierExtension", "t": "Extension"},
)


class ResourceTypeError(Exception):
    """An installed declaration is broken (a clash with R4, a second type of one name)."""


@dataclass(frozen=True, slots=True)
class ResourceType:
    """A resource type this server stores beside the R4 ones.

    ``name`` is its ``resourceType`` and ``url`` the canonical of its
    StructureDefinition (the CapabilityStatement's ``resource.profile``).
    ``elements`` are its own elements in the compact format of
    ``tools/generate_spec.py`` (``{"n", "min"?, "max"?, "t" | "x", "vs"?, "s"?}``);
    the elements of Resource, and of DomainResource when ``domain``, come first
    without being listed. ``backbones`` are its nested element types, named by
    path (``"ViewDefinition.select"``) and referred to by that name as a ``t``;
    their ``id``, ``extension`` and ``modifierExtension`` come without being listed.

    ``search_parameters`` are compact SearchParameters (``code``, ``type``,
    ``expression``, ``url``; ``base`` is filled in); the R4 parameters of every
    resource (``_id``, ``_lastUpdated`` ...) apply as well. ``patient_compartment``
    names the parameters that put a resource of the type in a Patient's
    compartment (none: it is not patient data). ``system_export`` says whether a
    system-level ``$export`` without ``_type`` includes it.

    ``validate`` runs after structural validation has passed, for the rules the
    element table cannot say (a FHIRPath that must parse, names that must be
    unique); it returns the problems, each with its ``expression``.
    """

    name: str
    url: str
    elements: tuple[dict[str, Any], ...]
    backbones: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    search_parameters: tuple[dict[str, Any], ...] = ()
    domain: bool = True
    patient_compartment: tuple[str, ...] = ()
    system_export: bool = True
    validate: Callable[[dict[str, Any]], list[Issue]] | None = None
    documentation: str = ""

    def type_definitions(self) -> dict[str, dict[str, Any]]:
        """Its entries for the spec's type table: the type and its backbones."""
        base = RESOURCE_ELEMENTS + (DOMAIN_ELEMENTS if self.domain else ())
        table: dict[str, dict[str, Any]] = {self.name: {
            "kind": "resource", "base": "DomainResource" if self.domain else "Resource",
            "elements": [*base, *self.elements]}}
        for path, elements in self.backbones.items():
            table[path] = {"kind": "backbone", "elements": [*BACKBONE_ELEMENTS, *elements]}
        return table

    def compact_search_parameters(self) -> list[dict[str, Any]]:
        return [{**parameter, "base": [self.name]} for parameter in self.search_parameters]


def installed_resource_types() -> tuple[ResourceType, ...]:
    """The declarations in the ``hygeia.resource_types`` entry-point group, checked
    against each other (the spec checks them against R4 when it merges them)."""
    found: dict[str, ResourceType] = {}
    for entry in entry_points(group=GROUP):
        try:
            declared = entry.load()
        except Exception as error:  # a broken package must not look like a Hygeia bug
            raise ResourceTypeError(
                f"the resource type {entry.name!r} ({entry.value}) cannot be loaded: "
                f"{error}; reinstall or uninstall the package that declares it") from error
        if not isinstance(declared, ResourceType):
            raise ResourceTypeError(f"{entry.value} (resource type {entry.name!r}) is not a "
                                    "hygeia.fhir.spec.logical.ResourceType")
        if declared.name in found:
            raise ResourceTypeError(f"two installed packages declare the resource type "
                                    f"{declared.name!r}")
        found[declared.name] = declared
    return tuple(found[name] for name in sorted(found))
