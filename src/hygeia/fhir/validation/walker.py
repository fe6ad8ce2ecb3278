"""Walk parsed FHIR JSON against compiled rules, collecting every problem.

:func:`walk` is the hot loop: one dict lookup and one tuple unpack per key,
primitives and nested objects handled inline, everything unusual (arrays,
references, resources, errors) pushed into helpers so the common path stays
short.  Locations are lazy tuple chains (:mod:`.paths`); nothing is formatted
unless an issue is recorded.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.outcome import Issue
from hygeia.fhir.validation.contained import (
    SCOPE,
    check_contained,
    check_unreferenced,
    local_reference_problem,
    open_scope,
)
from hygeia.fhir.validation.messages import (
    another_choice,
    binding_issue,
    missing,
    not_array,
    not_object,
    primitive_issue,
    small_object,
    unknown_element,
    unknown_resource_type,
)
from hygeia.fhir.validation.paths import Location, issue
from hygeia.fhir.validation.primitives import json_type_name
from hygeia.fhir.validation.references import (
    KNOWN_REFERENCES,
    KNOWN_UUID_REFERENCES,
    reference_problem,
)
from hygeia.fhir.validation.rules import (
    COMPLEX,
    CONTAINED,
    PRIMITIVE,
    PRIMITIVE_EXTENSION,
    REFERENCE,
    RESOURCE,
    STRING,
    Rule,
    TypeRules,
    compiled_types,
    resource_rules,
)


def walk(obj: dict[str, Any], rules: TypeRules, location: Location, issues: list[Issue]) -> None:
    """Check one JSON object of type ``rules`` and, recursively, everything in it."""
    if len(obj) < 2 and (not obj or "id" in obj):
        issues.append(small_object(obj, rules, location))
    fields = rules.fields
    chosen: Any = None  # (group, variant) of the first value[x] seen; a dict once there are two
    for key, value in obj.items():
        try:  # free in CPython 3.11+ unless raised, and faster than fields.get(key)
            kind, many, limit, arg, extra, choice, _type = rule = fields[key]
        except KeyError:
            issues.append(unknown_element(key, rules, location))
            continue
        if choice is not None:
            if chosen is None:
                chosen = choice
            else:
                chosen = another_choice(chosen, choice, key, location, issues)
        if many:
            if kind == COMPLEX and type(value) is list and value and not limit:
                for index, item in enumerate(value):
                    if type(item) is dict:
                        walk(item, arg, (location, key, index), issues)
                    else:
                        issues.append(not_object(key, item, (location, key, index)))
            else:
                _array(obj, key, value, rule, location, issues)
        elif kind == STRING:
            if type(value) is not str or (value not in arg and not arg.learn(value)):
                issues.append(primitive_issue(rule, key, value, location))
            elif extra is not None and value not in extra:
                issues.append(binding_issue(value, extra, key, (location, key, None)))
        elif kind == COMPLEX:
            if type(value) is dict:
                walk(value, arg, (location, key, None), issues)
            else:
                issues.append(not_object(key, value, (location, key, None)))
        elif kind == REFERENCE:
            if type(value) is dict:
                walk(value, arg, (location, key, None), issues)
                literal = value.get("reference")
                if literal.__class__ is str and literal not in KNOWN_UUID_REFERENCES:
                    _reference_literal(literal, extra, (location, key, None), issues)
            else:
                issues.append(not_object(key, value, (location, key, None)))
        elif kind == PRIMITIVE:
            if arg(value) is not None:
                issues.append(primitive_issue(rule, key, value, location))
        else:
            _single_special(obj, key, value, rule, location, issues)
    if rules.required:
        for name, keys in rules.required:
            for key in keys:
                if key in obj:
                    break
            else:
                issues.append(missing(rules, name, location))
    if rules.post is not None:
        rules.post(obj, chosen, location, issues)


def check_resource(
    value: Any, location: Location, issues: list[Issue], contained: bool = False
) -> None:
    """Check a resource nested in another (contained, Bundle.entry.resource...)."""
    if type(value) is not dict:
        issues.append(
            issue(
                "structure",
                f"expected a resource (JSON object), got {json_type_name(value)}",
                location,
            )
        )
        return
    name = value.get("resourceType")
    rules = resource_rules().get(name) if type(name) is str else None
    if rules is None:
        issues.append(unknown_resource_type(name, location))
    elif contained:
        _walk_contained(value, rules, location, issues)
    else:
        walk_resource(value, rules, location, issues)


def walk_resource(
    resource: dict[str, Any], rules: TypeRules, location: Location, issues: list[Issue]
) -> None:
    """Walk a resource that is not itself contained: it scopes its own ``#id`` references."""
    if "contained" not in resource and SCOPE.get() is None:
        walk(resource, rules, location, issues)  # the common case: nothing to resolve
        return
    scope = open_scope(resource)
    token = SCOPE.set(scope)
    try:
        walk(resource, rules, location, issues)
    finally:
        SCOPE.reset(token)
    if scope is not None:
        check_unreferenced(resource, scope, location, issues)


def _walk_contained(
    resource: dict[str, Any], rules: TypeRules, location: Location, issues: list[Issue]
) -> None:
    """A contained resource: its own rules, and a ``#`` inside it references the container."""
    scope = SCOPE.get()
    before = scope.container_refs if scope is not None else 0
    walk(resource, rules, location, issues)
    check_contained(resource, location, issues)
    identity = resource.get("id")
    if scope is not None and scope.container_refs > before and type(identity) is str:
        scope.referenced.add(identity)


# --------------------------------------------------------------------------- arrays


def _array(
    obj: dict[str, Any],
    key: str,
    value: Any,
    rule: Rule,
    location: Location,
    issues: list[Issue],
) -> None:
    """A repeating element: must be a non-empty array within max; check each item."""
    kind, _many, limit, arg, extra, _choice, _type = rule
    if kind == PRIMITIVE_EXTENSION:
        _twin_array(obj, key, value, rule, location, issues)
        return
    if type(value) is not list or not value:
        issues.append(not_array(key, value, (location, key, None)))
        return
    if limit and len(value) > limit:
        issues.append(
            issue(
                "structure",
                f"{key} has {len(value)} items, more than its maximum of {limit}",
                (location, key, None),
            )
        )
    if kind == STRING:
        for index, item in enumerate(value):
            if type(item) is not str or (item not in arg and not arg.learn(item)):
                _bad_primitive_item(obj, key, item, index, rule, location, issues)
            elif extra is not None and item not in extra:
                issues.append(binding_issue(item, extra, key, (location, key, index)))
    elif kind == COMPLEX:
        for index, item in enumerate(value):
            if type(item) is dict:
                walk(item, arg, (location, key, index), issues)
            else:
                issues.append(not_object(key, item, (location, key, index)))
    elif kind == REFERENCE:
        for index, item in enumerate(value):
            if type(item) is dict:
                walk(item, arg, (location, key, index), issues)
                literal = item.get("reference")
                if literal.__class__ is str and literal not in KNOWN_UUID_REFERENCES:
                    _reference_literal(literal, extra, (location, key, index), issues)
            else:
                issues.append(not_object(key, item, (location, key, index)))
    elif kind == PRIMITIVE:
        for index, item in enumerate(value):
            if arg(item) is not None:
                _bad_primitive_item(obj, key, item, index, rule, location, issues)
    elif kind in (RESOURCE, CONTAINED):
        for index, item in enumerate(value):
            check_resource(item, (location, key, index), issues, kind == CONTAINED)


def _bad_primitive_item(
    obj: dict[str, Any],
    key: str,
    item: Any,
    index: int,
    rule: Rule,
    location: Location,
    issues: list[Issue],
) -> None:
    """Report a bad primitive array item, unless it is a null whose ``_key`` twin is set."""
    if item is None:
        twin = obj.get("_" + key)
        if type(twin) is list and index < len(twin) and type(twin[index]) is dict:
            return
    issues.append(primitive_issue(rule, key, item, location, index))


def _twin_array(
    obj: dict[str, Any],
    key: str,
    value: Any,
    rule: Rule,
    location: Location,
    issues: list[Issue],
) -> None:
    """``_given``: extension objects aligned item by item with ``given``; null = none."""
    base = rule[3]
    if type(value) is not list or not value:
        issues.append(not_array(key, value, (location, key, None)))
        return
    values = obj.get(base)
    if type(values) is list and len(values) != len(value):
        issues.append(
            issue(
                "structure",
                f"{key} has {len(value)} items but {base} has {len(values)}; they must align",
                (location, key, None),
            )
        )
    element = compiled_types()["Element"]
    for index, item in enumerate(value):
        if type(item) is dict:
            walk(item, element, (location, base, index), issues)
        elif item is not None:
            issues.append(not_object(key, item, (location, key, index)))
        elif base not in obj:  # with a value array present, its own loop reports the null
            issues.append(
                issue(
                    "structure",
                    f"{key}[{index}] is null and there is no {base} value",
                    (location, key, index),
                )
            )


# --------------------------------------------------------------------------- singles


def _single_special(
    obj: dict[str, Any],
    key: str,
    value: Any,
    rule: Rule,
    location: Location,
    issues: list[Issue],
) -> None:
    """A non-repeating element that is not a plain primitive or datatype."""
    kind, _many, _limit, arg, _extra, _choice, _type = rule
    here = (location, key, None)
    if kind in (RESOURCE, CONTAINED):
        check_resource(value, here, issues, kind == CONTAINED)
    elif kind == PRIMITIVE_EXTENSION:
        if type(value) is dict:
            walk(value, compiled_types()["Element"], (location, arg, None), issues)
        else:
            issues.append(not_object(key, value, here))


def _reference_literal(
    literal: str, targets: frozenset[str] | None, location: Location, issues: list[Issue]
) -> None:
    """Check ``Reference.reference`` not already known to be a valid urn:uuid: reference."""
    if not literal:
        return  # the string rule already reported the empty string
    if literal[:9] == "urn:uuid:" and KNOWN_UUID_REFERENCES.learn(literal):
        return
    if literal[0] == "#":  # valid or not by the container at hand: never remembered
        problem = reference_problem(literal, targets) or local_reference_problem(literal)
    else:
        if (targets, literal) in KNOWN_REFERENCES or KNOWN_REFERENCES.learn(targets, literal):
            return
        problem = reference_problem(literal, targets)
    if problem is not None:
        issues.append(issue(problem[0], problem[1], (location, "reference", None)))
