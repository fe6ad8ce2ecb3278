"""A resource type outside R4 for tests, declared the way a pillar declares one.

tests/cli/test_resource_types.py installs it through the ``hygeia.resource_types``
entry-point group; like every such declaration it imports only ``hygeia.fhir``.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.outcome import Issue
from hygeia.fhir.spec.logical import ResourceType


def unique_line_names(greeting: dict[str, Any]) -> list[Issue]:
    """A rule the element table cannot say: line names are unique."""
    seen: set[str] = set()
    issues = []
    for index, line in enumerate(greeting.get("line", [])):
        name = line.get("name")
        if name in seen:
            issues.append(Issue("invariant", f"The line name {name!r} is used twice.",
                                expression=f"Greeting.line[{index}].name"))
        seen.add(name)
    return issues


GREETING = ResourceType(
    name="Greeting",
    url="urn:example:StructureDefinition:Greeting",
    documentation="A greeting for a patient (an example logical type).",
    elements=(
        {"n": "url", "s": 1, "t": "uri"},
        {"min": 1, "n": "name", "s": 1, "t": "string"},
        {"min": 1, "n": "status", "s": 1, "t": "code",
         "vs": "http://hl7.org/fhir/ValueSet/publication-status"},
        {"n": "audience", "t": ["Reference", ["Patient"]]},
        {"max": "*", "n": "line", "t": "Greeting.line"},
    ),
    backbones={"Greeting.line": (
        {"min": 1, "n": "name", "t": "string"},
        {"n": "text", "t": "string"},
    )},
    search_parameters=(
        {"code": "name", "type": "string", "expression": "Greeting.name",
         "url": "urn:example:SearchParameter:Greeting-name"},
        {"code": "status", "type": "token", "expression": "Greeting.status",
         "url": "urn:example:SearchParameter:Greeting-status"},
        {"code": "patient", "type": "reference", "expression": "Greeting.audience",
         "target": ["Patient"], "url": "urn:example:SearchParameter:Greeting-patient"},
    ),
    patient_compartment=("patient",),
    system_export=False,
    validate=unique_line_names,
)
