"""Structural validation of FHIR R4 JSON resources.

Rules are compiled once from the shipped StructureDefinition data (see
:mod:`.rules`) and checked in one pass over the parsed JSON: known
``resourceType``, unknown elements, JSON types, cardinality, required elements,
empty/null values, primitive formats, ``_element`` extension twins, choice
types, extensions, reference shapes and targets, contained and nested
resources, narrative XHTML shape and required-binding codes.

>>> validate({"resourceType": "Patient", "gender": "bogus"})[0].expression
'Patient.gender'
>>> validate({"resourceType": "Patient"}, expected_type="Observation")[0].code
'invalid'
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir import spec
from hygeia.fhir.outcome import Issue, Unprocessable
from hygeia.fhir.validation.messages import unknown_resource_type
from hygeia.fhir.validation.primitives import json_type_name
from hygeia.fhir.validation.rules import resource_rules
from hygeia.fhir.validation.walker import walk_resource

__all__ = ["MAX_ISSUES", "too_many_issues", "validate", "validate_or_raise"]

# problems listed for one resource: a body of a million bad elements would otherwise
# answer with a million issues (an OperationOutcome many times the body's size)
MAX_ISSUES = 100


class _Enough(Exception):
    """Raised by :class:`_IssueList` when it is full: the walk stops there."""


class _IssueList(list[Issue]):
    """The walker's issue list, which ends the walk once it holds MAX_ISSUES (a valid
    resource never appends, so the check costs nothing on the common path)."""

    def append(self, issue: Issue) -> None:
        if len(self) >= MAX_ISSUES:
            raise _Enough
        super().append(issue)


def too_many_issues() -> Issue:
    """The last issue of a list cut at MAX_ISSUES."""
    return Issue("too-costly", f"There are more than {MAX_ISSUES} problems; only the first "
                 f"{MAX_ISSUES} are listed.")


def validate(resource: Any, expected_type: str | None = None) -> list[Issue]:
    """Return every problem found in ``resource`` (an empty list means valid).

    ``expected_type`` is the type the caller requires (from the URL, say);
    ``"Resource"`` and ``"DomainResource"`` accept any resource of that kind.
    Never raises for bad input: a value nested too deeply to walk is reported
    as an issue too.
    """
    if type(resource) is not dict:
        return [
            Issue("structure", f"a resource must be a JSON object, got {json_type_name(resource)}")
        ]
    name = resource.get("resourceType")
    rules = resource_rules().get(name) if isinstance(name, str) else None
    if rules is None or not isinstance(name, str):
        return [unknown_resource_type(name, None)]
    issues = _IssueList()
    if expected_type is not None and not _is_expected(name, expected_type):
        issues.append(Issue("invalid", f"expected a {expected_type} resource, got {name}"))
    try:
        walk_resource(resource, rules, name, issues)
    except RecursionError:
        return [*issues[:MAX_ISSUES - 1],
                Issue("too-costly", "the resource is nested too deeply to validate")]
    except _Enough:
        return [*issues, too_many_issues()]
    if not issues and name in spec.logical_types():
        return _logical_rules(name, resource)
    return list(issues)


def _logical_rules(name: str, resource: dict[str, Any]) -> list[Issue]:
    """The checks a logical type declares beyond its elements (run on a structurally
    valid resource only)."""
    check = spec.logical_types()[name].validate
    issues = check(resource) if check is not None else []
    return issues if len(issues) <= MAX_ISSUES else [*issues[:MAX_ISSUES], too_many_issues()]


def validate_or_raise(resource: Any, expected_type: str | None = None) -> None:
    """Raise :class:`~hygeia.fhir.outcome.Unprocessable` (422) listing every issue, if any."""
    issues = validate(resource, expected_type)
    if issues:
        raise Unprocessable(issues=issues)


def _is_expected(name: str, expected_type: str) -> bool:
    if expected_type == "Resource":
        return True
    if expected_type == "DomainResource":
        return name in spec.domain_resource_types()
    return name == expected_type
