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
