"""A gateway whose last will announces it offline raises a device-offline alert for the
patient using one of its devices (the core's alerting service, through the devices
pillar's watcher of the change feed); online again clears it."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from tests.conftest import ServerProcess
from tests.devices.mqtt.broker import eventually, mosquitto_pub
from tests.devices.mqtt.conftest import device_of, search
from tests.devices.mqtt.test_listener import observation

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def test_an_offline_gateway_alerts_the_care_of_its_patients(mqtt_server: ServerProcess,
                                                           gateway: str) -> None:
    client = mqtt_server.client
    patient = client.post("Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    subject = f"Patient/{patient.json()['id']}"
    mosquitto_pub(f"hygeia/{gateway}/status", "online", retain=True)
    mosquitto_pub(f"hygeia/{gateway}/scale/obs", orjson.dumps(observation(71.5)))
    device = eventually(lambda: device_of(client, gateway, "scale"))
    assert isinstance(device, dict)
    used = client.post("DeviceUseStatement", headers=FHIR_JSON, json={
        "resourceType": "DeviceUseStatement", "status": "active",
        "subject": {"reference": subject}, "device": {"reference": f"Device/{device['id']}"},
        "timingPeriod": {"start": datetime.now(UTC).isoformat()}})
    assert used.status_code == 201, used.text

    mosquitto_pub(f"hygeia/{gateway}/status", "offline", retain=True)
    flags = eventually(lambda: search(client, f"Flag?patient={subject}") or None)
    assert isinstance(flags, list) and len(flags) == 1
    assert flags[0]["status"] == "active" and "offline" in str(flags[0]["code"])
    [communication] = search(client, f"Communication?subject={subject}")
    assert gateway in str(communication["payload"])

    mosquitto_pub(f"hygeia/{gateway}/status", "online", retain=True)
    eventually(lambda: [f["status"] for f in search(client, f"Flag?patient={subject}")]
               == ["inactive"])
