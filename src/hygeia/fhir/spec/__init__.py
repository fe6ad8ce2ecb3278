"""The FHIR R4 definitions hygeia ships as package data.

The data in ``_generated/`` is produced by ``tools/generate_spec.py`` from the
official R4 downloads, so the installed package never needs them.  Each file is
read lazily, once, on first use: importing this module costs nothing, and a
process that never validates never pays for the type table.

The returned structures are shared caches: treat them as read-only.

>>> is_resource_type("Patient"), is_resource_type("HumanName")
(True, False)
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib.resources import files
from typing import Any

import orjson

from hygeia.fhir.spec.logical import ResourceType, ResourceTypeError, installed_resource_types

__all__ = [
    "FHIR_VERSION",
    "ResourceType",
    "complex_types",
    "domain_resource_types",
    "is_resource_type",
    "logical_types",
    "patient_compartment",
    "primitive_types",
    "resource_types",
    "search_parameters",
    "type_definitions",
    "value_set_codes",
    "value_set_expansion",
]

FHIR_VERSION = "4.0.1"


def _load(name: str) -> Any:
    """Read one gzipped JSON file from ``_generated``."""
    raw = files(__name__).joinpath("_generated", name).read_bytes()
    return orjson.loads(gzip.decompress(raw))


@cache
def _types_document() -> dict[str, Any]:
    """The R4 type table, with the installed logical types merged in."""
    document: dict[str, Any] = _load("types.json.gz")
    types = document["types"]
    names = document["valueSets"][RESOURCE_TYPES_VALUE_SET]
    for declared in logical_types().values():
        if declared.name in types:
            raise ResourceTypeError(f"an installed package declares the resource type "
                                    f"{declared.name!r}, which is an R4 type")
        types.update(declared.type_definitions())
        names.append(declared.name)
    return document


@cache
def logical_types() -> dict[str, ResourceType]:
    """The installed resource types outside R4, by name (:mod:`.logical`)."""
    return {declared.name: declared for declared in installed_resource_types()}


def type_definitions() -> dict[str, dict[str, Any]]:
    """Every resource, complex datatype and backbone element by name.

    Each value is ``{"kind": "resource"|"complex"|"backbone", "elements": [...]}``
    in the compact element format described in ``tools/generate_spec.py``;
    backbone elements are named by path (``"Patient.contact"``).
    """
    types: dict[str, dict[str, Any]] = _types_document()["types"]
    return types


def primitive_types() -> dict[str, dict[str, Any]]:
    """Primitive type name -> ``{"kind", "regex", "min"?, "max"?, "maxLength"?}``."""
    primitives: dict[str, dict[str, Any]] = _types_document()["primitives"]
    return primitives


@cache
def _value_sets() -> dict[str, frozenset[str]]:
    return {url: frozenset(codes) for url, codes in _types_document()["valueSets"].items()}


def value_set_codes(url: str) -> frozenset[str] | None:
    """Codes of a required value set we could expand fully, or None (version ignored)."""
    return _value_sets().get(url.split("|", 1)[0])


RESOURCE_TYPES_VALUE_SET = "http://hl7.org/fhir/ValueSet/resource-types"


@cache
def resource_types() -> frozenset[str]:
    """Names of all concrete R4 resource types (``Patient``, ``Bundle``...).

    The shipped StructureDefinitions also define SubscriptionStatus, which is
    not an R4 resource: R4's own ResourceType value set decides what counts.
    """
    defined = {name for name, info in type_definitions().items() if info["kind"] == "resource"}
    official = value_set_codes(RESOURCE_TYPES_VALUE_SET)
    return frozenset(defined & official if official else defined)


@cache
def domain_resource_types() -> frozenset[str]:
    """Resource types that derive from DomainResource (all but Bundle, Binary, Parameters)."""
    return frozenset(
        name
        for name, info in type_definitions().items()
        if info["kind"] == "resource" and info.get("base") == "DomainResource"
    )


@cache
def complex_types() -> frozenset[str]:
    """Names of the complex datatypes (``HumanName``, ``Reference``...)."""
    return frozenset(name for name, info in type_definitions().items() if info["kind"] == "complex")


def is_resource_type(name: str) -> bool:
    """True when ``name`` is a concrete R4 resource type (case-sensitive)."""
    return name in resource_types()


@cache
def _expansions() -> dict[str, frozenset[tuple[str, str]]]:
    raw: dict[str, list[list[str]]] = _load("value_set_expansions.json.gz")
    return {url: frozenset((system, code) for system, code in codes)
            for url, codes in raw.items()}


def value_set_expansion(url: str) -> frozenset[tuple[str, str]] | None:
    """(system, code) pairs of a value set the spec enumerates, or None (``|version`` ignored).

    Used by the ``:in`` / ``:not-in`` search modifiers.
    """
    return _expansions().get(url.split("|", 1)[0])


@cache
def _search_parameters() -> tuple[dict[str, Any], ...]:
    logical = [parameter for declared in logical_types().values()
               for parameter in declared.compact_search_parameters()]
    return (*_load("search_parameters.json.gz"), *logical)


def search_parameters() -> list[dict[str, Any]]:
    """All R4 SearchParameters in compact form.

    Each dict has ``code``, ``base`` (resource types), ``type``, ``url`` and,
    where the spec gives them, ``expression``, ``target``, ``modifier``,
    ``comparator``, ``multipleOr``, ``multipleAnd`` and ``component``
    (``[{"code", "definition", "expression"}]``).  The list is new on every
    call; the dicts inside are shared.
    """
    return list(_search_parameters())


@cache
def patient_compartment() -> dict[str, list[str]]:
    """Resource type -> search parameter codes that link it to a Patient.

    Types with no such parameter are not in the Patient compartment and are absent.
    """
    compartment: dict[str, list[str]] = _load("compartment_patient.json.gz")
    for declared in logical_types().values():
        if declared.patient_compartment:
            compartment[declared.name] = list(declared.patient_compartment)
    return compartment
