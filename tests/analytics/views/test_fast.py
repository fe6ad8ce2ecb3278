"""The JSON walk of simple paths gives what the FHIRPath engine gives, on the shapes that
tempt it to differ (choice elements, primitive extensions, nulls in arrays, a type
filter that is not a choice), and the shapes it does not take are left to the engine."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.analytics.views import ViewError, compile_view
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


VIEWS: list[dict[str, Any]] = [
    {"resource": "Observation", "select": [
        {"column": [{"name": "id", "path": "getResourceKey()"},
                    {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                    {"name": "value", "path": "value.ofType(Quantity).value"}]},
        {"forEachOrNull": "component",
         "column": [{"name": "code", "path": "code.coding.first().code"},
                    {"name": "number", "path": "value.ofType(Quantity).value"},
                    {"name": "has_code", "path": "code.exists()"}]}]},
    {"resource": "Observation", "select": [
        {"column": [{"name": "id", "path": "id"}]},
        {"forEach": "component", "column": [{"name": "codes", "path": "code.coding.code",
                                             "collection": True}]}]},
    {"resource": "Observation", "select": [
        {"column": [{"name": "id", "path": "id"}],
         "unionAll": [{"forEach": "code.coding", "column": [{"name": "c", "path": "code"}]},
                      {"forEach": "component.code.coding",
                       "column": [{"name": "c", "path": "code"}]}]}]},
    {"resource": "Patient", "select": [
        {"column": [{"name": "id", "path": "id"}, {"name": "active", "path": "active"}]},
        {"forEachOrNull": "telecom", "column": [{"name": "phone", "path": "value"},
                                                {"name": "any", "path": "system.exists()"}]},
        {"forEach": "name", "select": [{"column": [{"name": "family", "path": "family"}]}]}]},
]


@pytest.mark.parametrize("raw", VIEWS, ids=["forEachOrNull", "collection", "unionAll",
                                            "nested"])
@pytest.mark.parametrize("resource", [OBSERVATION, PATIENT, {"resourceType": "Observation",
                                                            "id": "bare"}],
                         ids=["Observation", "Patient", "bare"])
def test_a_walked_view_gives_the_general_paths_rows(raw: dict[str, Any],
                                                    resource: dict[str, Any]) -> None:
    """A view whose every expression walks JSON builds its rows without the general
    path (``CompiledView._walked``); both give the same rows, in the same column order,
    including forEachOrNull's row over nothing (where ``exists()`` is false)."""
    view = compile_view(raw)
    assert view.root.fast
    general = [dict.fromkeys(view.columns) | row
               for row in view._node(view.root, resource, dict(view.constants), 0)]
    walked = view.resource_rows(resource)
    assert walked == general
    assert [list(row) for row in walked] == [view.columns] * len(walked)


def test_a_resource_the_walk_cannot_take_goes_the_general_way() -> None:
    """``deceased`` named by its base (``deceasedBoolean`` in the JSON) needs the engine:
    the row still comes, and a resource without it is walked."""
    view = compile_view({"resource": "Patient", "select": [
        {"column": [{"name": "id", "path": "id"}, {"name": "dead", "path": "deceased"}]}]})
    assert view.root.fast
    assert view.resource_rows(PATIENT) == [{"id": "p1", "dead": False}]
    assert view.resource_rows({"resourceType": "Patient", "id": "p2"}) == [
        {"id": "p2", "dead": None}]


def test_several_values_without_collection_is_still_an_error_with_its_location() -> None:
    view = compile_view({"resource": "Observation", "select": [
        {"column": [{"name": "codes", "path": "code.coding.code"}]}]})
    assert view.root.fast
    with pytest.raises(ViewError, match=r"column\[0\].*returned 2 values"):
        view.resource_rows(OBSERVATION)
