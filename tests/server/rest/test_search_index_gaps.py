"""Search over values the index used to skip, with hand-computed expected results.

Ranges and Quantity comparators under number/quantity parameters, SampledData,
date parameters over string elements, and the DocumentReference
``relationship`` composite (whose R4 definition is corrected at generation).
Runs through the service on both backends; tests/api/test_http.py repeats the
essentials over real HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.server import FhirService
from tests.helpers import body, call


def put(service: FhirService, resource: dict[str, Any]) -> None:
    response = call(service, "PUT", f"{resource['resourceType']}/{resource['id']}", resource)
    assert response.status in (200, 201), body(response)


def ids(service: FhirService, query: str) -> list[str]:
    bundle = body(call(service, "GET", query))
    return sorted(e["resource"]["id"] for e in bundle.get("entry", [])
                  if e["search"]["mode"] == "match")


@pytest.fixture
def documents(service: FhirService) -> FhirService:
    def document(id: str, **extra: Any) -> dict[str, Any]:
        return {"resourceType": "DocumentReference", "id": id, "status": "current",
                "content": [{"attachment": {"url": f"http://example.org/{id}"}}], **extra}

    put(service, document("old"))
    put(service, document("new", relatesTo=[
        {"code": "replaces", "target": {"reference": "DocumentReference/old"}}]))
    put(service, document("note", relatesTo=[
        {"code": "appends", "target": {"reference": "DocumentReference/old"}}]))
    return service


def test_document_reference_relationship_composite(documents: FhirService) -> None:
    assert ids(documents, "DocumentReference?relationship=DocumentReference/old$replaces") == [
        "new"]
    assert ids(documents, "DocumentReference?relationship=old$appends,old$replaces") == [
        "new", "note"]
    assert ids(documents, "DocumentReference?relationship=DocumentReference/new$replaces") == []
    assert ids(documents, "DocumentReference?relationship=old$transforms") == []
    # the plain parameters the components are defined by agree
    assert ids(documents, "DocumentReference?relatesto=old&relation=replaces") == ["new"]


def test_date_over_string_elements(service: FhirService) -> None:
    def immunization(id: str, occurrence: str) -> dict[str, Any]:
        return {"resourceType": "Immunization", "id": id, "status": "completed",
                "vaccineCode": {"text": "flu"}, "patient": {"reference": "Patient/p"},
                "occurrenceString": occurrence}

    put(service, immunization("month", "2019-05"))
    put(service, immunization("moment", "2019-05-03T10:00:00+02:00"))
    put(service, immunization("prose", "spring 2019"))
    assert ids(service, "Immunization?date=2019") == ["moment", "month"]
    assert ids(service, "Immunization?date=2019-05-03") == ["moment"]
    assert ids(service, "Immunization?date=lt2019-05-03") == ["month"]
    assert ids(service, "Immunization?date:missing=true") == ["prose"]


UCUM = "http://unitsofmeasure.org"
YEARS = {"system": UCUM, "code": "a", "unit": "years"}


@pytest.fixture
def onsets(service: FhirService) -> FhirService:
    def condition(id: str, **onset: Any) -> dict[str, Any]:
        return {"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/p"},
                **onset}

    put(service, condition("age40", onsetAge={"value": 40, **YEARS}))
    put(service, condition("range30to50", onsetRange={"low": {"value": 30, **YEARS},
                                                        "high": {"value": 50, **YEARS}}))
    put(service, condition("from60", onsetRange={"low": {"value": 60, **YEARS}}))
    put(service, condition("upto10", onsetRange={"high": {"value": 10, **YEARS}}))
    put(service, condition("none", onsetString="childhood"))
    return service


@pytest.mark.parametrize(("value", "expected"), [
    ("40", ["age40"]),
    ("ne40", ["from60", "range30to50", "upto10"]),
    ("ap40", ["age40", "range30to50"]),
    ("gt45", ["from60", "range30to50"]),
    ("ge50", ["from60", "range30to50"]),
    ("lt35", ["range30to50", "upto10"]),
    ("le30", ["range30to50", "upto10"]),
    ("sa40", ["from60"]),
    ("eb20", ["upto10"]),
    ("gt45|http://unitsofmeasure.org|a", ["from60", "range30to50"]),
    ("gt45||mo", []),
    ("40,eb20", ["age40", "upto10"]),
])
def test_ranges_under_a_quantity_parameter(onsets: FhirService, value: str,
                                           expected: list[str]) -> None:
    assert ids(onsets, f"Condition?onset-age={value}") == expected


def test_sorting_and_paging_over_ranges(onsets: FhirService) -> None:
    """Ascending by the lowest start, descending by the highest end; open ends are
    finite sentinels, so they survive the JSON paging cursor."""
    def walk(sort: str) -> list[str]:
        found: list[str] = []
        path: str | None = f"Condition?onset-age:missing=false&_sort={sort}&_count=2"
        while path is not None:
            bundle = body(call(onsets, "GET", path))
            found += [e["resource"]["id"] for e in bundle.get("entry", [])]
            path = next((link["url"].removeprefix("http://test/fhir/")
                         for link in bundle["link"] if link["relation"] == "next"), None)
        return found

    assert walk("onset-age") == ["upto10", "range30to50", "age40", "from60"]
    assert walk("-onset-age") == ["from60", "range30to50", "age40", "upto10"]


def test_a_range_under_a_number_parameter(service: FhirService) -> None:
    def risk(id: str, **prediction: Any) -> dict[str, Any]:
        return {"resourceType": "RiskAssessment", "id": id, "status": "final",
                "subject": {"reference": "Patient/p"}, "prediction": [prediction]}

    put(service, risk("point", probabilityDecimal=0.3))
    put(service, risk("range", probabilityRange={"low": {"value": 0.2},
                                                 "high": {"value": 0.4}}))
    assert ids(service, "RiskAssessment?probability=0.3") == ["point"]
    assert ids(service, "RiskAssessment?probability=0.30") == ["point"]
    assert ids(service, "RiskAssessment?probability=ap0.3") == ["point", "range"]
    assert ids(service, "RiskAssessment?probability=gt0.35") == ["range"]
    assert ids(service, "RiskAssessment?probability=ge0.3") == ["point", "range"]
    assert ids(service, "RiskAssessment?probability=lt0.25") == ["range"]
    assert ids(service, "RiskAssessment?probability=sa0.25") == ["point"]
    assert ids(service, "RiskAssessment?probability=eb0.45") == ["point", "range"]


@pytest.fixture
def comparators(service: FhirService) -> FhirService:
    def observation(id: str, **quantity: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": id, "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "x"}]},
                "valueQuantity": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg",
                                  **quantity}}

    put(service, observation("lt5", comparator="<"))
    put(service, observation("le5", comparator="<="))
    put(service, observation("ge5", comparator=">="))
    put(service, observation("gt5", comparator=">"))
    put(service, observation("is5"))
    return service


@pytest.mark.parametrize(("value", "expected"), [
    ("5", ["is5"]),
    ("ne5", ["ge5", "gt5", "le5", "lt5"]),
    ("lt5", ["le5", "lt5"]),
    ("le5", ["ge5", "is5", "le5", "lt5"]),
    ("ge5", ["ge5", "gt5", "is5", "le5"]),
    ("gt5", ["ge5", "gt5"]),
    ("gt4", ["ge5", "gt5", "is5", "le5", "lt5"]),
    ("sa5", ["gt5"]),
    ("eb5", ["lt5"]),
    ("ap5", ["ge5", "gt5", "is5", "le5", "lt5"]),
    ("lt5|http://unitsofmeasure.org|mg", ["le5", "lt5"]),
])
def test_quantity_comparators(comparators: FhirService, value: str,
                              expected: list[str]) -> None:
    assert ids(comparators, f"Observation?value-quantity={value}") == expected
    # the same values through the code-value-quantity composite
    assert ids(comparators, f"Observation?code-value-quantity=http://loinc.org|x${value}") == \
        expected


def test_sampled_data(service: FhirService) -> None:
    def observation(id: str, **sampled: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": id, "status": "final",
                "code": {"text": "pressure"},
                "valueSampledData": {"origin": {"value": 100, "system": UCUM, "code": "mm[Hg]",
                                                "unit": "mmHg"},
                                     "period": 10, "dimensions": 1, **sampled}}

    put(service, observation("wave", factor=2, data="1 5 -3 E"))  # 102, 110, 94
    put(service, observation("clipped", data="0 U", upperLimit=120))  # 100 and above 120
    assert ids(service, "Observation?value-quantity=gt105") == ["clipped", "wave"]
    assert ids(service, "Observation?value-quantity=gt200") == ["clipped"]
    assert ids(service, "Observation?value-quantity=lt95") == ["wave"]
    assert ids(service, "Observation?value-quantity=eb111") == ["wave"]
    assert ids(service, "Observation?value-quantity=100") == []
    assert ids(service, "Observation?value-quantity=ap100||mm[Hg]") == ["clipped", "wave"]
    assert ids(service, "Observation?combo-value-quantity=sa95") == ["clipped"]


def test_context_quantity_range_and_composite(service: FhirService) -> None:
    age = {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "age"}
    put(service, {"resourceType": "ValueSet", "id": "adults", "status": "active",
                  "useContext": [{"code": age, "valueRange": {
                      "low": {"value": 18, **YEARS}, "high": {"value": 65, **YEARS}}}]})
    put(service, {"resourceType": "ValueSet", "id": "children", "status": "active",
                  "useContext": [{"code": age, "valueQuantity": {"value": 8, **YEARS}}]})
    assert ids(service, "ValueSet?context-quantity=gt60") == ["adults"]
    assert ids(service, "ValueSet?context-quantity=70") == []
    assert ids(service, "ValueSet?context-quantity=le10") == ["children"]
    assert ids(service, "ValueSet?context-type-quantity=age$ap30") == ["adults"]
    assert ids(service, "ValueSet?context-type-quantity=age$lt20") == ["adults", "children"]
    assert ids(service, "ValueSet?context-type-quantity=age$gt70") == []
