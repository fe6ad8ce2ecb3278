"""Lazy FHIRPath locations."""

from __future__ import annotations

from hygeia.fhir.validation.paths import child, issue, render


def test_render_builds_indexed_fhirpath() -> None:
    location = child(child(child("Observation", "component", 1), "valueQuantity"), "value")
    assert render(location) == "Observation.component[1].valueQuantity.value"


def test_render_root_only() -> None:
    assert render("Patient") == "Patient"


def test_issue_renders_only_when_built() -> None:
    built = issue("value", "bad", child(child("Patient", "name", 0), "given", 1))
    assert built.expression == "Patient.name[0].given[1]"
    assert issue("structure", "bad", None).expression is None
