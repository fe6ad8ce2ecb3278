"""Storing readings (devices/mqtt/storing.py) on both databases, without a broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hygeia.devices.mqtt.payloads import MAX_PAYLOAD_BYTES, parse_reading
from hygeia.devices.mqtt.storing import Seen, ensure_topic_device, store_reading
from hygeia.devices.mqtt.topics import TopicLayout
from hygeia.devices.registry import associate
from hygeia.fhir.outcome import FhirError, PreconditionFailed
from hygeia.fhir.search.query import parse_query
from hygeia.server import FhirService
from hygeia.server.rest import write
from tests.devices.mqtt.test_listener import observation

LAYOUT = TopicLayout.from_filter("hygeia/+/+/obs")
TOPIC = "hygeia/ward-3/bed-7/obs"


def store(service: FhirService, payload: dict[str, Any], topic: str = TOPIC,
          known: dict[str, str] | None = None) -> Any:
    reading = parse_reading(LAYOUT, topic, orjson.dumps(payload))
    with service.transaction() as session:
        return store_reading(session, reading, known)


def observations(service: FhirService) -> list[dict[str, Any]]:
    with service.reader() as session:
        query = parse_query("Observation", [], registry=session.registry)
        return [orjson.loads(v.content or b"{}") for v in session.search(query).matches]


def new_patient(service: FhirService) -> str:
    with service.transaction() as session:
        response = write.create(session, "Patient", {"resourceType": "Patient"})
    assert response.location is not None
    return response.location.split("/")[1]


def test_a_reading_gets_the_patient_the_device_was_associated_with_then(
        service: FhirService) -> None:
    patient = new_patient(service)
    with service.transaction() as session:
        device = ensure_topic_device(session, "ward-3", "bed-7")
        associate(session, device, patient, start="2026-01-01T00:00:00Z")
    store(service, observation(70, effectiveDateTime="2026-02-01T10:00:00Z"))
    store(service, observation(71, effectiveDateTime="2025-12-31T10:00:00Z"))  # before
    by_value = {o["valueQuantity"]["value"]: o for o in observations(service)}
    assert by_value[70]["subject"] == {"reference": f"Patient/{patient}"}
    assert "subject" not in by_value[71]
    assert by_value[70]["device"] == {"reference": f"Device/{device}"}


def test_a_batch_reads_a_devices_associations_once_and_attributes_each_reading_by_time(
        service: FhirService) -> None:
    first, second = new_patient(service), new_patient(service)
    known: dict[str, str] = {}
    with service.transaction() as session:
        device = ensure_topic_device(session, "ward-3", "bed-7", known)
        associate(session, device, first, start="2026-01-01T00:00:00Z",
                  end="2026-02-01T00:00:00Z")
        associate(session, device, second, start="2026-02-01T00:00:00Z")
    seen = Seen()
    with service.transaction() as session:  # as the listener stores a batch
        for value, at in ((80, "2026-01-15T10:00:00Z"), (81, "2026-02-15T10:00:00Z"),
                          (82, "2025-12-15T10:00:00Z")):
            reading = parse_reading(LAYOUT, TOPIC, orjson.dumps(
                observation(value, effectiveDateTime=at)))
            store_reading(session, reading, known, seen)
    assert seen.carried == {device} and list(seen.associations) == [device]
    by_value = {o["valueQuantity"]["value"]: o for o in observations(service)}
    assert by_value[80]["subject"] == {"reference": f"Patient/{first}"}
    assert by_value[81]["subject"] == {"reference": f"Patient/{second}"}
    assert "subject" not in by_value[82]


def test_a_subject_or_device_the_payload_gives_is_kept(service: FhirService) -> None:
    patient = new_patient(service)
    store(service, observation(60, subject={"reference": f"Patient/{patient}"},
                               device={"display": "a monitor the gateway names"}))
    stored, = observations(service)
    assert stored["subject"] == {"reference": f"Patient/{patient}"}
    assert stored["device"] == {"display": "a monitor the gateway names"}


def test_the_identifier_keys_a_reading_even_when_the_payload_changes(
        service: FhirService) -> None:
    identifier = [{"system": "urn:example:reading", "value": "r-1"}]
    first = store(service, observation(50, identifier=identifier))
    again = store(service, observation(50, identifier=identifier, note=[{"text": "resent"}]))
    assert (first.created, first.replayed, again.created, again.replayed) == (1, 0, 0, 1)
    assert len(observations(service)) == 1


def test_without_identifier_the_topic_and_payload_key_a_reading(service: FhirService) -> None:
    store(service, observation(40))
    store(service, observation(40))
    store(service, observation(40), topic="hygeia/ward-3/bed-8/obs")  # another device
    stored = observations(service)
    assert len(stored) == 2 and len({o["id"] for o in stored}) == 2
    assert all(len(o["id"]) == 64 for o in stored)  # SHA-256, hex


def test_a_conditional_reference_that_matches_nothing_is_refused(
        service: FhirService) -> None:
    with pytest.raises(PreconditionFailed, match="matches no resource"):
        store(service, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation(1, subject={"reference": "Patient?identifier=x%7Cnone"}),
             "request": {"method": "POST", "url": "Observation"}}]})
    assert observations(service) == []


@pytest.mark.parametrize("question_mark", ["?", "\\u003f", "\\u003F"])
def test_a_conditional_reference_in_an_observation_is_resolved_however_it_is_written(
        service: FhirService, question_mark: str) -> None:
    """The reference walk is skipped only for a payload that cannot hold a "?"; JSON
    may write one escaped."""
    with service.transaction() as session:
        patient = write.create(session, "Patient", {"resourceType": "Patient", "identifier": [
            {"system": "urn:example:mrn", "value": "q-1"}]}).location
    assert patient is not None
    payload = orjson.dumps(observation(64, subject={
        "reference": "Patient?identifier=urn:example:mrn%7Cq-1"}))
    payload = payload.replace(b"?", question_mark.encode())
    reading = parse_reading(LAYOUT, TOPIC, payload)
    with service.transaction() as session:
        store_reading(session, reading, once=True)
    stored, = observations(service)
    assert stored["subject"] == {"reference": "/".join(patient.split("/")[-4:-2])}


def test_a_reading_stored_once_is_stored_as_a_copy_would_be(service: FhirService) -> None:
    """``once`` skips the copy only: the stored resource is the same."""
    payload = orjson.dumps(observation(66, effectiveDateTime="2025-12-15T10:00:00Z"))
    for once, topic in ((False, TOPIC), (True, "hygeia/ward-3/bed-8/obs")):
        with service.transaction() as session:
            store_reading(session, parse_reading(LAYOUT, topic, payload), once=once)
    first, second = observations(service)
    assert first["device"] != second["device"]  # a Device per topic
    strip = ("id", "meta", "device")
    assert {k: v for k, v in first.items() if k not in strip} == \
        {k: v for k, v in second.items() if k not in strip} == orjson.loads(payload)


@pytest.mark.parametrize(("payload", "message"), [
    (b"[1, 2]", "must be an Observation or a Bundle"),
    (orjson.dumps({"resourceType": "Bundle", "type": "searchset"}), "not a gateway upload"),
    (orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Practitioner"},
         "request": {"method": "POST", "url": "Practitioner"}}]}), "holds Practitioner"),
    (orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation(1), "request": {"method": "DELETE", "url": "Observation/1"}}
    ]}), "may only create"),
    (b"x" * (MAX_PAYLOAD_BYTES + 1), "at most"),
])
def test_payloads_that_cannot_be_stored_say_why(payload: bytes, message: str) -> None:
    with pytest.raises(FhirError, match=message):
        parse_reading(LAYOUT, TOPIC, payload)


def test_a_remembered_device_is_used_only_while_it_exists(service: FhirService) -> None:
    known: dict[str, str] = {}
    first = store(service, observation(1), known=known).device_id
    assert known == {"ward-3/bed-7": first}
    assert store(service, observation(2), known=known).device_id == first
    with service.transaction() as session:
        write.delete(session, "Device", first)
    again = store(service, observation(3), known=known).device_id
    assert again != first and known == {"ward-3/bed-7": again}


def test_a_reading_stored_in_a_transaction_that_rolled_back_is_stored_alike_again(
        service: FhirService) -> None:
    """The listener retries a failed batch message by message, with the same readings."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:0d4c2e1a-1111-4a5e-9f00-000000000001",
         "resource": {"resourceType": "Device", "deviceName": [{"name": "cuff",
                                                                 "type": "model-name"}]}},
        {"resource": observation(120, device={
            "reference": "urn:uuid:0d4c2e1a-1111-4a5e-9f00-000000000001"})}]}
    reading = parse_reading(LAYOUT, TOPIC, orjson.dumps(bundle))
    with pytest.raises(RuntimeError), service.transaction() as session:
        store_reading(session, reading)
        raise RuntimeError("the batch failed")
    with service.transaction() as session:
        first = store_reading(session, reading)
    with service.transaction() as session:
        again = store_reading(session, reading)
    assert (first.created, again.created, again.replayed) == (1, 0, 1)
    with service.reader() as session:
        query = parse_query("Device", [("device-name", "cuff")], registry=session.registry)
        assert len(session.search(query).matches) == 1
