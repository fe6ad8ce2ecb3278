"""The general case: expressions the path compiler refuses are run by fhirpathpy.

No official R4 SearchParameter needs this (see the tests); it exists for custom
SearchParameters with arbitrary FHIRPath.  fhirpathpy is imported lazily, on the
first expression that needs it.  Its results carry no FHIR type, so
:func:`guess_type` reads the type off the value's shape, which is enough to
pick a normaliser.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

__all__ = ["Evaluator", "fallback_evaluator", "guess_type"]

# (start node, resource) -> [(value, FHIR type)]
Evaluator = Callable[[Any, dict[str, Any]], list[tuple[Any, str]]]

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_STRING_TYPE = {"date": "dateTime", "reference": "uri", "uri": "uri", "token": "code"}


def fallback_evaluator(expression: str, param_type: str) -> Evaluator:
    """Compile ``expression`` with fhirpathpy once; evaluation errors yield no values."""
    compiled = _compile(expression)

    def evaluate(node: Any, resource: dict[str, Any]) -> list[tuple[Any, str]]:
        try:
            values = compiled(node, {"resource": resource, "rootResource": resource})
        except Exception:  # any FHIRPath runtime error just means "no value" for indexing
            return []
        return [(value, guess_type(value, param_type)) for value in values if value is not None]

    return evaluate


@cache
def _compile(expression: str) -> Callable[..., list[Any]]:
    import fhirpathpy
    from fhirpathpy.models import models

    return fhirpathpy.compile(expression, models["r4"])


def guess_type(value: Any, param_type: str) -> str:
    """The FHIR type a fhirpathpy result most likely has, from its JSON shape."""
    if type(value) is bool:
        return "boolean"
    if type(value) is int:
        return "integer"
    if type(value) is float:
        return "decimal"
    if type(value) is str:
        return _STRING_TYPE.get(param_type, "string")
    if type(value) is dict:
        return _guess_object(value)
    return "string"


def _guess_object(value: dict[str, Any]) -> str:
    kind = value.get("resourceType")
    if type(kind) is str:
        return kind
    checks: tuple[tuple[str, bool], ...] = (
        ("CodeableConcept", "coding" in value),
        ("Reference", "reference" in value or ("identifier" in value and "system" not in value)),
        ("Money", "currency" in value),
        ("Quantity", "value" in value and ("unit" in value or "code" in value)),
        ("Period", "start" in value or "end" in value),
        ("HumanName", "family" in value or "given" in value),
        ("Address", "line" in value or "city" in value or "postalCode" in value),
        ("Timing", "event" in value or "repeat" in value),
        ("ContactPoint", value.get("system") in _CONTACT_SYSTEMS),
        ("Coding", "code" in value),
        ("Identifier", "value" in value),
    )
    return next((name for name, matched in checks if matched), "CodeableConcept")
