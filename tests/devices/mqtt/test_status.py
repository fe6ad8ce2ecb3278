"""Gateway status on the gateway's Device (devices/mqtt/status.py), both databases."""

from __future__ import annotations

import logging

import orjson
import pytest

from hygeia.devices.mqtt.status import parse_status, record_status
from hygeia.devices.mqtt.storing import ensure_gateway
from hygeia.fhir.outcome import BadRequest
from hygeia.server import FhirService


def test_only_a_change_of_status_is_recorded_and_offline_raises_the_alert(
        service: FhirService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "hygeia.devices.mqtt")
    with service.transaction() as session:
        steps = [record_status(session, "gw-1", status)
                 for status in ("online", "online", "offline", "offline")]
        gateway = ensure_gateway(session, "gw-1")
        device = session.current("Device", gateway)
    assert steps == [False, False, True, False]  # a new gateway Device starts active
    assert device is not None and orjson.loads(device.content or b"")["status"] == "inactive"
    alerts = [r for r in caplog.records if "device-offline alert" in r.getMessage()]
    assert len(alerts) == 1 and "gw-1" in alerts[0].getMessage()


def test_a_status_is_online_offline_or_empty() -> None:
    assert parse_status(b" Online\n") == "online"
    assert parse_status(b"") is None  # a retained status cleared
    with pytest.raises(BadRequest, match="'online' or 'offline'"):
        parse_status(b"sleeping")
