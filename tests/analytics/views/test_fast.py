"""The JSON walk of simple paths gives what the FHIRPath engine gives, on the shapes that
tempt it to differ (choice elements, primitive extensions, nulls in arrays, a type
filter that is not a choice), and the shapes it does not take are left to the engine."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.analytics.views.fast import fast_path
from hygeia.analytics.views.fhirpath import compile_path, plain

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"},
                        {"system": "urn:x", "code": "bp"}], "text": "Blood pressure"},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2020-02-01T10:00:00+01:00",
    "component": [
        {"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mm"}},
        {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": 80.5}},
        {"code": {"coding": [{"code": "x"}]}, "valueString": "n/a"}],
}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "p1", "active": True, "birthDate": "1970-01-01",
    "_birthDate": {"extension": [{"url": "urn:time", "valueDateTime": "1970-01-01T08:00"}]},
    "name": [{"family": "Ames", "given": ["Ann", None], "_given": [None, {"id": "g2"}]},
             {"family": "Bell"}],
    "deceasedBoolean": False, "multipleBirthInteger": 2,
    "contained": [{"resourceType": "Patient", "id": "c1"}],
    "generalPractitioner": [{"reference": "Practitioner/d1/_history/2"},
                            {"reference": "Organization/o9"}, {"display": "no reference"}],
}
EXPRESSIONS = [
    "id", "status", "code.coding.code", "code.coding.first().code", "code.text",
    "subject.getReferenceKey(Patient)", "subject.getReferenceKey(Group)",
    "subject.getReferenceKey()", "getResourceKey()", "effective.ofType(dateTime)",
    "effective.ofType(Period)", "value.ofType(Quantity).value", "component.code.coding.code",
    "component.value.ofType(Quantity).value", "component.value.ofType(string)",
    "component.exists()", "component.empty()", "note.exists()", "note.empty()",
    "birthDate", "active", "name.family", "name.first().family", "name.given",
    "deceased.ofType(boolean)", "multipleBirth.ofType(integer)", "deceased",
    "contained.ofType(Patient).id", "generalPractitioner.getReferenceKey()",
    "generalPractitioner.getReferenceKey(Practitioner)", "name.given.first()",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
@pytest.mark.parametrize("resource", [OBSERVATION, PATIENT], ids=["Observation", "Patient"])
def test_the_walk_agrees_with_the_engine(expression: str, resource: dict[str, Any]) -> None:
    compiled = compile_path(expression)
    assert compiled.fast, expression
    engine = [plain(item) for item in compiled.typed(resource, {})]
    assert compiled.values(resource, {}) == engine
    assert [plain(item) for item in compiled(resource, {})] == engine


@pytest.mark.parametrize("expression", [
    "name.where(use = 'official').family", "Patient.name.family", "name.family | id",
    "%resource.id", "$this.id", "name[0].family", "name.family.join(',')", "iif(active, 1, 2)",
    "value.ofType(FHIR.Quantity)", "true", "id.lowBoundary()",
])
def test_other_shapes_are_left_to_the_engine(expression: str) -> None:
    assert fast_path(expression) is None
    assert not compile_path(expression).fast


def test_forEach_items_of_the_engine_are_walked_too() -> None:
    """A forEach the engine ran hands typed nodes to the columns inside it."""
    items = compile_path("component").typed(OBSERVATION, {})
    walk = compile_path("value.ofType(Quantity).value")
    assert [walk.values(item, {}) for item in items] == [[120], [80.5], []]
