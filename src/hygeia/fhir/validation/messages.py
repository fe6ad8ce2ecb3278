"""The issues the walker reports: wording and FHIR issue codes in one place.

Building an issue is the slow path (formatting, rendering the location), so it
lives apart from the hot loop in :mod:`.walker`; these run only on bad input.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.outcome import Issue
from hygeia.fhir.validation.paths import Location, issue
from hygeia.fhir.validation.primitives import check_primitive, json_type_name, shown
from hygeia.fhir.validation.rules import Rule, TypeRules


def unknown_resource_type(name: Any, location: Location | None) -> Issue:
    """The issue for a missing or unknown ``resourceType``."""
    if name is None:
        return issue("structure", "resourceType is missing", location)
    return issue("structure", f"unknown resourceType {shown(name)}", location)


def missing(rules: TypeRules, name: str, location: Location) -> Issue:
    return issue(
        "required",
        f"{rules.name}.{name} is required (minimum cardinality 1) but missing",
        (location, name, None),
    )


def small_object(obj: dict[str, Any], rules: TypeRules, location: Location) -> Issue:
    """Empty objects are invalid JSON FHIR; so is an element holding only an id (ele-1)."""
    if not obj:
        return issue("structure", f"an empty object is not allowed ({rules.name})", location)
    return issue(
        "invariant",
        f"ele-1: {rules.name} has only an id: an element needs a value or children",
        location,
    )


def unknown_element(key: Any, rules: TypeRules, location: Location) -> Issue:
    name = key if type(key) is str else repr(key)
    for rule in rules.fields.values():
        choice = rule[5]
        if choice is not None and is_variant_name(name, choice[0]):
            return issue(
                "structure",
                f"{name!r} is not an allowed type for {rules.name}.{choice[0]}[x]",
                (location, name, None),
            )
    return issue("structure", f"unknown element {name!r} in {rules.name}", (location, name, None))


def is_variant_name(name: str, group: str) -> bool:
    """``valueFoo`` looks like a ``value[x]`` variant: the group then an upper-case letter."""
    return name.startswith(group) and name[len(group) : len(group) + 1].isupper()


def another_choice(
    chosen: Any, choice: tuple[str, str], key: str, location: Location, issues: list[Issue]
) -> dict[str, str]:
    """Record a second (or later) ``value[x]`` key; two variants of one group is an error.

    The walker keeps the first choice as the rule's own tuple so that the common
    case (one ``value[x]`` per object) allocates nothing.
    """
    if type(chosen) is tuple:
        chosen = {chosen[0]: chosen[1]}
    group, variant = choice
    seen = chosen.setdefault(group, variant)
    if seen != variant:
        issues.append(
            issue(
                "structure",
                f"{group}[x] may have only one type, found {seen} and {variant}",
                (location, key, None),
            )
        )
    return chosen


def primitive_issue(
    rule: Rule, key: str, value: Any, location: Location, index: int | None = None
) -> Issue:
    code, message = check_primitive(rule[6], value) or ("value", f"invalid {rule[6]}")
    if index is None and type(value) is list:
        code, message = "structure", f"{key} repeats at most once, so it must not be an array"
    elif value is None:
        message = f"{key} is null; leave an element out instead of sending null"
    return issue(code, message, (location, key, index))


def binding_issue(value: Any, codes: frozenset[str], key: str, location: Location) -> Issue:
    allowed = ", ".join(sorted(codes)) if len(codes) <= 12 else f"one of {len(codes)} codes"
    return issue(
        "code-invalid",
        f"{shown(value)} is not in the required value set for {key} (allowed: {allowed})",
        location,
    )


def not_object(key: str, value: Any, location: Location) -> Issue:
    if value is None:
        return issue(
            "structure", f"{key} is null; leave an element out instead of sending null", location
        )
    if type(value) is list:
        return issue(
            "structure", f"{key} repeats at most once, so it must not be an array", location
        )
    return issue(
        "structure", f"expected a JSON object for {key}, got {json_type_name(value)}", location
    )


def not_array(key: str, value: Any, location: Location) -> Issue:
    if type(value) is list:
        return issue("structure", f"{key} is an empty array; leave it out instead", location)
    if value is None:
        return issue(
            "structure", f"{key} is null; leave an element out instead of sending null", location
        )
    return issue(
        "structure",
        f"{key} repeats, so it must be a JSON array, got {json_type_name(value)}",
        location,
    )
