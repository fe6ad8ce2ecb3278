"""Devices found by identifier and their lifecycle status (devices/registry/devices.py)."""

from __future__ import annotations

import pytest

from hygeia.devices.registry import ensure_device, set_metric_status
from hygeia.devices.registry.devices import find_device, parse_identifier, set_device_status
from hygeia.fhir.outcome import BadRequest
from hygeia.server import FhirService
from hygeia.server.rest import write


def test_a_device_is_created_once_and_its_status_changes_only_when_told(
        service: FhirService) -> None:
    with service.transaction() as session:
        first = ensure_device(session, "urn:example:serial", "pump|7,a")  # escaped in search
        again = ensure_device(session, "urn:example:serial", "pump|7,a")
        assert first == again
        assert set_device_status(session, first, "inactive") is True
        assert set_device_status(session, first, "inactive") is False
        found = find_device(session, "urn:example:serial", "pump|7,a")
        assert found is not None and found.version == 2
        with pytest.raises(BadRequest, match="not a Device status"):
            set_device_status(session, first, "broken")


def test_a_device_metric_is_switched_on_and_off(service: FhirService) -> None:
    with service.transaction() as session:
        device = ensure_device(session, "urn:example:serial", "monitor-1")
        response = write.create(session, "DeviceMetric", {
            "resourceType": "DeviceMetric", "type": {"text": "SpO2"}, "category": "measurement",
            "source": {"reference": f"Device/{device}"}, "operationalStatus": "on"})
        assert response.location is not None
        metric = response.location.split("/")[1]
        assert set_metric_status(session, metric, "standby") is True
        assert set_metric_status(session, metric, "standby") is False
        with pytest.raises(BadRequest, match="operational status"):
            set_metric_status(session, metric, "active")


@pytest.mark.parametrize("token", ["no-pipe", "|value", "system|"])
def test_an_identifier_is_system_bar_value(token: str) -> None:
    with pytest.raises(BadRequest, match="system\\|value"):
        parse_identifier(token)
