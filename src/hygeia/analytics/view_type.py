"""The SQL on FHIR v2 ``ViewDefinition`` as a resource type of this server.

Declared through the ``hygeia.resource_types`` entry point (see
:mod:`hygeia.fhir.spec.logical`), so every process that reads the spec knows it:
``/fhir/ViewDefinition`` is created, read, searched (``url``, ``name``, ``status``,
``resource``), validated and scoped (``ViewDefinition.rs``) like an R4 type. This
module is loaded by every process that reads the spec, so it imports only
``hygeia.fhir``; the view-specific rules (expressions that parse, unique column
names, union branches that match) come from the runner, imported when a view is
validated.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.outcome import Issue
from hygeia.fhir.spec.logical import ResourceType

URL = "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition"

_CONSTANT_VALUES = {
    "value" + kind[0].upper() + kind[1:]: kind
    for kind in (
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
    )
}


def view_rules(view: dict[str, Any]) -> list[Issue]:
    """What the element table cannot say: the view must compile (see the runner)."""
    from hygeia.analytics.views import ViewError, compile_view

    try:
        compile_view(view)
    except ViewError as error:
        return [Issue("invalid", str(error), expression=error.location)]
    return []


def _parameter(code: str, kind: str, expression: str) -> dict[str, Any]:
    return {
        "code": code,
        "type": kind,
        "expression": expression,
        "url": f"https://sql-on-fhir.org/ig/SearchParameter/ViewDefinition-{code}",
    }


VIEW_DEFINITION = ResourceType(
    name="ViewDefinition",
    url=URL,
    documentation="A SQL on FHIR v2 view: how to flatten one resource type into rows.",
    elements=(
        {"n": "url", "s": 1, "t": "uri"},
        {"max": "*", "n": "identifier", "s": 1, "t": "Identifier"},
        {"n": "name", "s": 1, "t": "string"},
        {"n": "title", "s": 1, "t": "string"},
        {
            "n": "status",
            "s": 1,
            "t": "code",
            "vs": "http://hl7.org/fhir/ValueSet/publication-status",
        },
        {"n": "experimental", "t": "boolean"},
        {"n": "publisher", "t": "string"},
        {"max": "*", "n": "contact", "t": "ContactDetail"},
        {"n": "description", "t": "markdown"},
        {"max": "*", "n": "useContext", "t": "UsageContext"},
        {"n": "copyright", "t": "markdown"},
        {"min": 1, "n": "resource", "s": 1, "t": "code"},
        {"max": "*", "n": "fhirVersion", "t": "code"},
        {"max": "*", "n": "constant", "t": "ViewDefinition.constant"},
        {"min": 1, "max": "*", "n": "select", "t": "ViewDefinition.select"},
        {"max": "*", "n": "where", "t": "ViewDefinition.where"},
    ),
    backbones={
        "ViewDefinition.constant": (
            {"min": 1, "n": "name", "t": "string"},
            {"min": 1, "n": "value", "x": _CONSTANT_VALUES},
        ),
        "ViewDefinition.select": (
            {"max": "*", "n": "column", "t": "ViewDefinition.select.column"},
            {"max": "*", "n": "select", "t": "ViewDefinition.select"},
            {"n": "forEach", "t": "string"},
            {"n": "forEachOrNull", "t": "string"},
            {"max": "*", "n": "repeat", "t": "string"},
            {"max": "*", "n": "unionAll", "t": "ViewDefinition.select"},
        ),
        "ViewDefinition.select.column": (
            {"min": 1, "n": "path", "t": "string"},
            {"min": 1, "n": "name", "t": "string"},
            {"n": "description", "t": "markdown"},
            {"n": "collection", "t": "boolean"},
            {"n": "type", "t": "uri"},
            {"max": "*", "n": "tag", "t": "ViewDefinition.select.column.tag"},
        ),
        "ViewDefinition.select.column.tag": (
            {"min": 1, "n": "name", "t": "string"},
            {"min": 1, "n": "value", "t": "string"},
        ),
        "ViewDefinition.where": (
            {"min": 1, "n": "path", "t": "string"},
            {"n": "description", "t": "string"},
        ),
    },
    search_parameters=(
        _parameter("url", "uri", "ViewDefinition.url"),
        _parameter("name", "string", "ViewDefinition.name"),
        _parameter("status", "token", "ViewDefinition.status"),
        _parameter("resource", "token", "ViewDefinition.resource"),
    ),
    system_export=False,
    validate=view_rules,
)
