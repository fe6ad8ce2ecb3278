"""Compile the shipped type table into per-type dict lookups, once per process.

Validation never looks at a StructureDefinition.  Each resource, datatype and
backbone element becomes a :class:`TypeRules` whose ``fields`` dict maps every
JSON key that may appear (``valueQuantity``, ``_birthDate``, ``resourceType``)
straight to a precompiled rule tuple, so the walker does one dict lookup and
one tuple unpack per key.

A rule is ``(kind, many, max, arg, extra, choice, type name)``:

=========================  =====================================  ==========================
kind                       arg                                    extra
=========================  =====================================  ==========================
``STRING``                 the type's :class:`.KnownGood` memo    required codes or None
``PRIMITIVE``              checker from :mod:`.primitives`        None
``COMPLEX``                the element type's :class:`TypeRules`  None
``REFERENCE``              Reference's :class:`TypeRules`         allowed target types/None
``RESOURCE``               None                                   None
``CONTAINED``              None                                   None
``PRIMITIVE_EXTENSION``    the value key (``birthDate``)          None
``RESOURCE_TYPE``          None                                   None
=========================  =====================================  ==========================

``many`` says the JSON must be an array, ``max`` is its largest size (0: no
limit) and ``choice`` is ``(group, variant)`` for ``value[x]`` keys.  String-like
primitives (most of any resource) get their own kind so the walker usually
checks them with one set lookup instead of a Python call; every primitive
keeps a full checker in :func:`.primitives.primitive_checkers` that decides
and explains.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from hygeia.fhir import spec
from hygeia.fhir.validation.invariants import POST_CHECKS
from hygeia.fhir.validation.primitives import known_good, primitive_checkers

STRING = 0
COMPLEX = 1
REFERENCE = 2
PRIMITIVE = 3
RESOURCE = 4
CONTAINED = 5
PRIMITIVE_EXTENSION = 6
RESOURCE_TYPE = 7
PRIMITIVE_KINDS = frozenset({STRING, PRIMITIVE})

Rule = tuple[int, bool, int, Any, Any, "tuple[str, str] | None", str]
Required = tuple[str, tuple[str, ...]]


class TypeRules:
    """Everything needed to check one JSON object of a given FHIR type."""

    __slots__ = ("fields", "is_resource", "name", "post", "required")

    def __init__(self, name: str, is_resource: bool) -> None:
        self.name = name
        self.is_resource = is_resource
        self.fields: dict[str, Rule] = {}
        # (element name, keys any one of which satisfies min >= 1)
        self.required: tuple[Required, ...] = ()
        self.post: Callable[..., None] | None = POST_CHECKS.get(name)


class _Compiler:
    """Two passes: create every TypeRules, then fill them (types refer to each other)."""

    def __init__(self) -> None:
        self.definitions = spec.type_definitions()
        self.checkers = primitive_checkers()
        self.rules = {
            name: TypeRules(name, info["kind"] == "resource")
            for name, info in self.definitions.items()
        }

    def compile(self) -> dict[str, TypeRules]:
        for name, info in self.definitions.items():
            self._fill(self.rules[name], info["elements"])
        return self.rules

    def _fill(self, rules: TypeRules, elements: list[dict[str, Any]]) -> None:
        required: list[Required] = []
        if rules.is_resource:
            rules.fields["resourceType"] = (RESOURCE_TYPE, False, 0, None, None, None, "code")
        for element in elements:
            keys = self._element(rules, element)
            if element.get("min"):
                required.append((element["n"], tuple(keys)))
        rules.required = tuple(required)

    def _element(self, rules: TypeRules, element: dict[str, Any]) -> list[str]:
        """Add the rules for one element; return the keys that count as its presence."""
        top = element.get("max", 1)
        many = top != 1
        limit = 0 if top == "*" else int(top)
        variants = list(element["x"].items()) if "x" in element else [(element["n"], element["t"])]
        present: list[str] = []
        for key, type_ref in variants:
            choice = (element["n"], key) if "x" in element else None
            rule = self._rule(rules, key, type_ref, many, limit, choice, element.get("vs"))
            rules.fields[key] = rule
            present.append(key)
            # XML attributes and xhtml (whose extension is max 0) have no ``_name`` twin
            if rule[0] in PRIMITIVE_KINDS and not element.get("attr") and rule[6] != "xhtml":
                twin = "_" + key
                rules.fields[twin] = (PRIMITIVE_EXTENSION, many, limit, key, None, choice, rule[6])
                present.append(twin)
        return present

    def _rule(
        self,
        rules: TypeRules,
        key: str,
        type_ref: Any,
        many: bool,
        limit: int,
        choice: tuple[str, str] | None,
        value_set: str | None,
    ) -> Rule:
        code, targets = type_ref if isinstance(type_ref, list) else (type_ref, None)
        if code in self.checkers:
            return self._primitive(code, many, limit, choice, value_set)
        if code == "Resource":
            kind = CONTAINED if rules.is_resource and key == "contained" else RESOURCE
            return (kind, many, limit, None, None, choice, code)
        if code == "Reference":
            allowed = frozenset(targets) if targets else None
            return (REFERENCE, many, limit, self.rules[code], allowed, choice, code)
        return (COMPLEX, many, limit, self.rules[code], None, choice, code)

    def _primitive(
        self,
        code: str,
        many: bool,
        limit: int,
        choice: tuple[str, str] | None,
        value_set: str | None,
    ) -> Rule:
        if code == "xhtml" or spec.primitive_types()[code]["kind"] != "string":
            return (PRIMITIVE, many, limit, self.checkers[code], None, choice, code)
        codes = spec.value_set_codes(value_set) if value_set else None
        return (STRING, many, limit, known_good(code), codes, choice, code)


@cache
def compiled_types() -> dict[str, TypeRules]:
    """Every type's rules by name (``Patient``, ``HumanName``, ``Patient.contact``)."""
    return _Compiler().compile()


@cache
def resource_rules() -> dict[str, TypeRules]:
    """Rules of concrete resource types only, for ``resourceType`` lookups."""
    return {name: rules for name, rules in compiled_types().items() if rules.is_resource}
