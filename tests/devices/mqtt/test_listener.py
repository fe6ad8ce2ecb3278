"""``hygeia serve --mqtt-url``: real gateways (mosquitto_pub, paho) through Mosquitto.

Each test publishes as a gateway of its own (a uuid name) to the shared broker
and reads the result through the server's FHIR API, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import ServerProcess
from tests.devices.mqtt.broker import (
    BROKER_HOST,
    BROKER_PORT,
    eventually,
    mosquitto_pub,
    subscribed,
)
from tests.devices.mqtt.conftest import device_of, search


def observation(value: float, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                 "display": "Heart rate"}]},
            "valueQuantity": {"value": value, "unit": "/min",
                              "system": "http://unitsofmeasure.org", "code": "/min"},
            **extra}


def observations_of(server: ServerProcess, gateway: str, device: str) -> list[dict[str, Any]]:
    found = device_of(server.client, gateway, device)
    if found is None:
        return []
    return search(server.client, f"Observation?device=Device/{found['id']}&_count=1000")


def test_an_observation_becomes_searchable_by_its_device(mqtt_server: ServerProcess,
                                                         gateway: str) -> None:
    mosquitto_pub(f"hygeia/{gateway}/monitor-1/obs", orjson.dumps(observation(72)))
    stored = eventually(lambda: observations_of(mqtt_server, gateway, "monitor-1"))
    assert isinstance(stored, list) and len(stored) == 1
    assert stored[0]["valueQuantity"]["value"] == 72
    device = device_of(mqtt_server.client, gateway, "monitor-1")
    assert device is not None and stored[0]["device"] == {"reference": f"Device/{device['id']}"}
    parent = mqtt_server.client.get(device["parent"]["reference"]).json()
    assert parent["identifier"] == [{"system": "urn:hygeia:mqtt:gateway", "value": gateway}]
    by_code = search(mqtt_server.client,
                     f"Observation?device=Device/{device['id']}&code=http://loinc.org%7C8867-4")
    assert [o["id"] for o in by_code] == [stored[0]["id"]]


def test_a_message_published_twice_is_stored_once(mqtt_server: ServerProcess,
                                                  gateway: str) -> None:
    without_identifier = orjson.dumps(observation(80))
    with_identifier = orjson.dumps(observation(81, identifier=[
        {"system": "urn:example:reading", "value": uuid.uuid4().hex}]))
    for payload in (without_identifier, with_identifier, without_identifier, with_identifier):
        mosquitto_pub(f"hygeia/{gateway}/monitor-2/obs", payload)
    mosquitto_pub(f"hygeia/{gateway}/monitor-2/obs", orjson.dumps(observation(82)))  # the last
    eventually(lambda: any(o["valueQuantity"]["value"] == 82
                           for o in observations_of(mqtt_server, gateway, "monitor-2")))
    values = sorted(o["valueQuantity"]["value"]
                    for o in observations_of(mqtt_server, gateway, "monitor-2"))
    assert values == [80, 81, 82]


def test_an_invalid_payload_is_reported_on_the_error_topic(mqtt_server: ServerProcess,
                                                           gateway: str) -> None:
    bad = observation(90)
    bad["status"] = "measured-ish"
    # the server's own subscription is live (a reading of another device was stored)
    mosquitto_pub(f"hygeia/{gateway}/monitor-3-probe/obs", orjson.dumps(observation(70)))
    eventually(lambda: observations_of(mqtt_server, gateway, "monitor-3-probe"))
    with subscribed(f"hygeia/{gateway}/monitor-3/error") as errors:
        mosquitto_pub(f"hygeia/{gateway}/monitor-3/obs", orjson.dumps(bad))
        mosquitto_pub(f"hygeia/{gateway}/monitor-3/obs", b"{not json")
        eventually(lambda: len(errors.messages) == 2)
    first, second = (json.loads(payload) for _, payload in errors.messages)
    assert first["resourceType"] == "OperationOutcome"
    assert any(issue.get("expression") == ["Observation.status"] for issue in first["issue"])
    assert "not JSON" in second["issue"][0]["diagnostics"]
    assert observations_of(mqtt_server, gateway, "monitor-3") == []


def test_a_phd_gateway_bundle_is_stored_with_its_device_and_patient(
        mqtt_server: ServerProcess, gateway: str) -> None:
    serial = uuid.uuid4().hex
    bundle = phd_bundle(serial)
    mosquitto_pub(f"hygeia/{gateway}/phd-1/obs", orjson.dumps(bundle))
    stored = eventually(lambda: search(
        mqtt_server.client, f"Observation?identifier=urn:example:phd%7C{serial}-1"))
    assert isinstance(stored, list)
    phd = search(mqtt_server.client, f"Device?identifier=urn:ieee:11073:eui64%7C{serial}")
    assert len(phd) == 1 and stored[0]["device"] == {"reference": f"Device/{phd[0]['id']}"}
    patient = search(mqtt_server.client, f"Patient?identifier=urn:example:mrn%7C{serial}")
    assert len(patient) == 1
    both = readings_of(mqtt_server, patient[0]["id"])
    assert len(both) == 2
    mosquitto_pub(f"hygeia/{gateway}/phd-1/obs", orjson.dumps(bundle))  # replayed
    mosquitto_pub(f"hygeia/{gateway}/phd-1/obs", orjson.dumps(observation(1)))
    eventually(lambda: observations_of(mqtt_server, gateway, "phd-1"))
    assert len(readings_of(mqtt_server, patient[0]["id"])) == 2
    assert len(search(mqtt_server.client,
                      f"Device?identifier=urn:ieee:11073:eui64%7C{serial}")) == 1


def readings_of(mqtt_server: ServerProcess, patient: str) -> list[dict[str, Any]]:
    """The patient's Observations from the gateway (identifier urn:example:phd), not the
    NEWS2 scores the clinical pillar derives from them."""
    return [o for o in search(mqtt_server.client, f"Observation?patient=Patient/{patient}")
            if any(i.get("system") == "urn:example:phd" for i in o.get("identifier", []))]


def phd_bundle(serial: str) -> dict[str, Any]:
    """A transaction as a PHD gateway uploads it (PHD IG): patient, device, readings."""
    patient, device = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    readings = [observation(value, identifier=[{"system": "urn:example:phd",
                                                "value": f"{serial}-{index}"}],
                            subject={"reference": patient}, device={"reference": device},
                            effectiveDateTime="2026-01-05T08:00:00Z")
                for index, value in ((1, 64), (2, 66))]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient, "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:example:mrn", "value": serial}]},
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier=urn:example:mrn|{serial}"}},
        {"fullUrl": device, "resource": {
            "resourceType": "Device",
            "identifier": [{"system": "urn:ieee:11073:eui64", "value": serial}],
            "type": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "65573",
                                 "display": "MDC_MOC_VMS_MDS_SIMP"}]}},
         "request": {"method": "POST", "url": "Device",
                     "ifNoneExist": f"identifier=urn:ieee:11073:eui64|{serial}"}},
        *({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": reading,
           "request": {"method": "POST", "url": "Observation"}} for reading in readings)]}


def test_gateway_status_is_kept_on_the_gateway_device(mqtt_server: ServerProcess,
                                                      gateway: str) -> None:
    def gateway_status() -> str | None:
        found = search(mqtt_server.client,
                       f"Device?identifier=urn:hygeia:mqtt:gateway%7C{gateway}")
        return found[0]["status"] if found else None

    mosquitto_pub(f"hygeia/{gateway}/status", "online", retain=True)
    eventually(lambda: gateway_status() == "active")
    mosquitto_pub(f"hygeia/{gateway}/status", "offline", retain=True)
    eventually(lambda: gateway_status() == "inactive")


def test_a_message_with_properties_is_stored_like_one_without(mqtt_server: ServerProcess,
                                                               gateway: str) -> None:
    """The listener reads plain messages itself and leaves those with MQTT 5 properties
    to paho (hygeia.devices.mqtt.client): both are stored."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/fhir+json"
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(BROKER_HOST, BROKER_PORT)
    publisher.loop_start()
    try:
        topic = f"hygeia/{gateway}/monitor-5/obs"
        publisher.publish(topic, orjson.dumps(observation(70)), qos=1,
                          properties=properties).wait_for_publish(10)
        publisher.publish(topic, orjson.dumps(observation(71)), qos=1).wait_for_publish(10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    eventually(lambda: len(observations_of(mqtt_server, gateway, "monitor-5")) == 2)
    assert sorted(o["valueQuantity"]["value"]
                  for o in observations_of(mqtt_server, gateway, "monitor-5")) == [70, 71]
