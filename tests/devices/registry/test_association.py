"""Patient association over time (devices/registry/association.py), both databases."""

from __future__ import annotations

import orjson
import pytest

from hygeia.devices.registry import associate, associations, ensure_device, patient_of
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest, NotFound
from hygeia.server import FhirService
from hygeia.server.rest import write


def at(text: str) -> int:
    return fhir_datetime_range(text)[0]


def new(service: FhirService, resource_type: str) -> str:
    with service.transaction() as session:
        response = write.create(session, resource_type, {"resourceType": resource_type})
    assert response.location is not None
    return response.location.split("/")[1]


def test_a_new_association_ends_the_open_one(service: FhirService) -> None:
    first, second = new(service, "Patient"), new(service, "Patient")
    with service.transaction() as session:
        device = ensure_device(session, "urn:example:serial", "scale-1")
        associate(session, device, first, start="2026-01-01T00:00:00Z")
        associate(session, device, second, start="2026-03-01T00:00:00Z")
    with service.reader() as session:
        assert patient_of(session, device, at("2026-02-01T00:00:00Z")) == f"Patient/{first}"
        assert patient_of(session, device, at("2026-03-02T00:00:00Z")) == f"Patient/{second}"
        assert patient_of(session, device, at("2025-12-01T00:00:00Z")) is None
        newest, older = associations(session, device)
        assert (newest.end, older.end) == (None, at("2026-03-01T00:00:00Z"))
        statement = orjson.loads(session.current("DeviceUseStatement", older.id).content)
    assert statement["status"] == "completed"
    assert statement["timingPeriod"] == {"start": "2026-01-01T00:00:00Z",
                                         "end": "2026-03-01T00:00:00Z"}


def test_an_association_needs_the_device_the_patient_and_a_sane_period(
        service: FhirService) -> None:
    patient = new(service, "Patient")
    with service.transaction() as session:
        device = ensure_device(session, "urn:example:serial", "scale-2")
    with pytest.raises(NotFound, match="Patient/nobody"), service.transaction() as session:
        associate(session, device, "nobody")
    with pytest.raises(BadRequest, match="ends"), service.transaction() as session:
        associate(session, device, patient, start="2026-02-01", end="2026-01-01")

