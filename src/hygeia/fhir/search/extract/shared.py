"""Parameters whose index rows are exactly the union of other parameters' rows.

R4 defines several parameters as unions of others on the same resource type:
Observation ``combo-code`` is ``code | component.code``, ``combo-value-quantity``
is ``value-quantity | component-value-quantity``, ``combo-code-value-quantity``
the same for the composite; Patient ``phonetic`` is ``name`` again.  Storing
their rows a second time was 18% of all index rows of Synthea data, so such a
*shared* parameter writes no rows of its own: queries read the rows of the
parameters it is made of (its *stored codes*), and every query shape (value
conditions, ``:missing``, sorting, chains, includes) works on the union.

A parameter is shared only when its compiled members (paths and FHIR types,
see :mod:`.compiler`) equal the union of other parameters' members exactly,
with the same search type (and, for composites, the same components), so the
union yields the same rows the parameter would have written.  Only official
R4 parameters take part: a custom parameter is always stored as itself, and an
official parameter replaced by a custom one of the same code is neither shared
nor a source of rows for another (``$reindex`` then writes its rows).

A second kind, *filtered* sharing, covers reference parameters defined as
another parameter narrowed to one target type: Observation ``patient`` is
``subject.where(resolve() is Patient)``, Encounter ``practitioner`` is
``participant`` narrowed to Practitioner.  Their reference rows are the other
parameter's rows whose ``target_type`` is that type, so they are not stored
either (13,000 rows of Synthea's 44 patients); queries read the other
parameter's rows with that condition added.  Their ``:identifier`` token rows
(logical references) carry no target type, so those stay stored as their own.

The in-memory matcher extracts *complete* rows (shared parameters included),
so the oracle tests check this mapping against the plain definition.
"""

from __future__ import annotations

import weakref
from functools import lru_cache
from typing import Any, cast

from hygeia.fhir.search.extract.compiler import compile_members
from hygeia.fhir.search.extract.paths import TargetIs
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry, default_registry

__all__ = ["filtered_parameters", "shared_parameters", "stored_codes", "stored_sources"]

Signature = frozenset[object]
# (stored parameter code, the target type its rows must point at, or None for all rows)
Source = tuple[str, str | None]

_Maps = tuple[dict[str, tuple[str, ...]], dict[str, Source]]
# registry -> resource type -> (the for_type dict the maps were built from, (shared, filtered))
_MAPS: weakref.WeakKeyDictionary[
    SearchRegistry, dict[str, tuple[dict[str, SearchParameter], _Maps]]
] = weakref.WeakKeyDictionary()


def stored_codes(registry: SearchRegistry | None, resource_type: str, code: str
                 ) -> tuple[str, ...]:
    """The parameter codes whose stored rows make up ``code``'s rows on ``resource_type``.

    ``code`` may carry a row-kind suffix (``combo-code:of-type``); it is kept on
    every stored code.  A parameter stored as itself gives ``(code,)``.
    """
    base, colon, suffix = code.partition(":")
    shared = shared_parameters(registry, resource_type).get(base)
    if shared is None:
        return (code,)
    return tuple(stored + colon + suffix for stored in shared)


def stored_sources(registry: SearchRegistry | None, resource_type: str, code: str
                   ) -> tuple[Source, ...]:
    """Where ``code``'s rows are stored: (stored code, required target type or None)."""
    if ":" not in code:  # row kinds of their own (:identifier...) are never narrowed
        narrowed = filtered_parameters(registry, resource_type).get(code)
        if narrowed is not None:
            return (narrowed,)
    return tuple((stored, None) for stored in stored_codes(registry, resource_type, code))


def filtered_parameters(registry: SearchRegistry | None, resource_type: str
                        ) -> dict[str, Source]:
    """code -> (stored code, target type), for every filtered reference parameter."""
    return _maps(registry, resource_type)[1]


def shared_parameters(registry: SearchRegistry | None, resource_type: str
                      ) -> dict[str, tuple[str, ...]]:
    """code -> stored codes, for every shared parameter of ``resource_type``."""
    return _maps(registry, resource_type)[0]


def _maps(registry: SearchRegistry | None, resource_type: str
          ) -> tuple[dict[str, tuple[str, ...]], dict[str, Source]]:
    registry = registry or default_registry()
    parameters = registry.for_type(resource_type)
    maps = _MAPS.get(registry)
    if maps is None:
        maps = _MAPS[registry] = {}
    cached = maps.get(resource_type)
    if cached is not None and cached[0] is parameters:
        return cached[1]
    official = default_registry().for_type(resource_type)
    usable = tuple(sorted(code for code, param in parameters.items()
                          if official.get(code) is param))
    shared = _official_shares(resource_type, usable)
    maps[resource_type] = (parameters, shared)
    return shared


@lru_cache(maxsize=512)
def _official_shares(resource_type: str, codes: tuple[str, ...]) -> _Maps:
    """Shared and filtered parameters among the official ``codes`` of a type.

    Smallest unions first, so a union is always made of parameters stored as
    themselves; a filtered parameter narrows a stored one.
    """
    official = default_registry().for_type(resource_type)
    signed = []
    for code in codes:
        signature = _signature(official[code], resource_type)
        if signature is not None:
            signed.append((len(signature[1]), code, signature))
    stored: dict[object, list[tuple[str, Signature]]] = {}
    shared: dict[str, tuple[str, ...]] = {}
    for _, code, (kind, members) in sorted(signed, key=lambda item: (item[0], item[1])):
        cover = _cover(members, stored.get(kind, []))
        if cover is None:
            stored.setdefault(kind, []).append((code, members))
        else:
            shared[code] = cover
    filtered: dict[str, Source] = {}
    for code, members in stored.get("reference", []):
        narrowed = _narrowed(members)
        if narrowed is None:
            continue
        wider, target = narrowed
        match = next((other for other, theirs in stored["reference"] if theirs == wider), None)
        if match is not None:
            filtered[code] = (match, target)
    return shared, filtered


def _narrowed(members: Signature) -> tuple[Signature, str] | None:
    """(members without their final ``where(resolve() is T)``, T) when all end so alike."""
    wider: set[object] = set()
    targets: set[str] = set()
    for member in members:
        fhir_type, source = cast(tuple[Any, tuple[tuple[Any, ...], bool]], member)
        ops, from_resource = source
        last = ops[-1] if ops else None
        if not isinstance(last, TargetIs):
            return None
        targets.add(last.type_name)
        wider.add((fhir_type, (ops[:-1], from_resource)))
    if len(targets) != 1:
        return None
    return frozenset(wider), targets.pop()


def _cover(members: Signature, candidates: list[tuple[str, Signature]]) -> tuple[str, ...] | None:
    """Stored codes whose members add up to exactly ``members``, or None."""
    chosen: list[str] = []
    covered: set[object] = set()
    for code, theirs in candidates:
        if theirs <= members and not theirs <= covered:
            chosen.append(code)
            covered |= theirs
    return tuple(chosen) if chosen and covered == members else None


def _signature(param: SearchParameter, resource_type: str) -> tuple[object, Signature] | None:
    """(kind, members) that decide the rows; None when they cannot be compared."""
    if not param.indexed or param.code.startswith("_"):
        return None
    if param.type == "composite":
        kind: object = ("composite", tuple((c.expression, c.type) for c in param.components))
    else:
        kind = param.type
    members = compile_members(param.expression or "", resource_type,
                              "composite" if param.type == "composite" else param.type)
    if not members or any(member.fallback or member.source is None for member in members):
        return None
    return kind, frozenset((member.type, member.source) for member in members)
