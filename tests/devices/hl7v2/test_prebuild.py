"""A PCD-01 message built off the writer's turn (OruHandler.prebuild) is used in the
transaction only while what it was built for still holds: the patient the transaction
attributes the message to. Otherwise the message is mapped again there, and the
device tree is always decided against what is stored at write time."""

from __future__ import annotations

from hygeia.devices.hl7v2.handling import Handled, Received, handler_prebuild
from hygeia.devices.hl7v2.oru import PREBUILT, OruHandler, Prebuilt
from hygeia.devices.hl7v2.writing import Remembered, valid
from hygeia.server import FhirRequest, FhirService
from tests.devices.hl7v2.oru_helpers import one, received, search
from tests.devices.hl7v2.test_writing import monitor, reading


def handle(service: FhirService, handler: OruHandler, message: Received) -> Handled:
    with service.transaction() as session:
        return handler(message, session)


def prebuilt(handler: OruHandler, number: int, service: FhirService | None = None
             ) -> Received:
    """reading(number), built as a listener builds it before its transaction (index
    rows too, with ``service``'s registry)."""
    message = received(reading(number))
    handler_prebuild(handler, message, service.registry if service is not None else None)
    return message


def observations(service: FhirService) -> list[dict[str, object]]:
    return search(service, "Observation", code="147842")


def marked(message: Received) -> Received:
    """``message`` with a marker in the heart-rate Observation built beforehand: stored
    only if the transaction uses what was built."""
    built: Prebuilt = message.derived[PREBUILT]
    for observation in built.result.observations:
        if observation["code"]["coding"][0]["code"] == "147842":
            observation["note"] = [{"text": "built beforehand"}]
    return message


def test_nothing_is_built_for_a_patient_never_attributed(service: FhirService) -> None:
    handler = OruHandler(None, Remembered())
    first = prebuilt(handler, 0)
    assert PREBUILT not in first.derived
    handle(service, handler, first)
    assert PREBUILT in prebuilt(handler, 1).derived  # the patient is known now


def test_what_was_built_is_used_while_the_patient_is_the_same(service: FhirService) -> None:
    handler = OruHandler(None, Remembered())
    handle(service, handler, prebuilt(handler, 0))
    second = marked(prebuilt(handler, 1))
    handled = handle(service, handler, second)
    stored = [o for o in observations(service) if o["id"] in
              {r.split("/")[1] for r in handled.written}]
    assert one(stored)["note"] == [{"text": "built beforehand"}]
    assert stored[0]["subject"]["reference"].startswith("Patient/")  # type: ignore[index]


def test_a_patient_changed_after_the_build_is_mapped_again(service: FhirService) -> None:
    handler = OruHandler(None, Remembered())
    handle(service, handler, prebuilt(handler, 0))
    second = marked(prebuilt(handler, 1))
    # between build and write, another Patient gets the same MRN: nobody is attributed
    patient = one(search(service, "Patient"))
    response = service.handle(FhirRequest("POST", "Patient", body={
        "resourceType": "Patient", "identifier": patient["identifier"]}))
    assert response.status == 201, response.body_dict()
    handled = handle(service, handler, second)
    stored = one([o for o in observations(service) if o["id"] in
                  {r.split("/")[1] for r in handled.written}])
    assert "subject" not in stored
    assert "more than one Patient" in stored["note"][0]["text"]  # type: ignore[index]


def test_a_device_changed_after_the_build_is_put_back(service: FhirService) -> None:
    handler = OruHandler(None, Remembered())
    handle(service, handler, prebuilt(handler, 0))
    handle(service, handler, prebuilt(handler, 1))  # the tree is known unchanged now
    second = prebuilt(handler, 2)
    assert PREBUILT in second.derived
    device = monitor(service)
    response = service.handle(FhirRequest("PUT", f"Device/{device['id']}",
                                          body={**device, "status": "inactive"}))
    assert response.status == 200, response.body_dict()
    handled = handle(service, handler, second)
    assert f"Device/{device['id']}" in handled.written
    assert monitor(service)["status"] == "active"


def test_a_failed_write_of_what_was_built_leaves_no_trace(service: FhirService) -> None:
    handler = OruHandler(None, Remembered())
    handle(service, handler, prebuilt(handler, 0))
    before = len(observations(service))
    second = prebuilt(handler, 1)
    try:
        with service.transaction() as session:
            handler(second, session)
            raise RuntimeError("the transaction fails after the handler ran")
    except RuntimeError:
        pass
    assert len(observations(service)) == before
    handle(service, handler, second)  # run again (as a failed batch's units are): stored
    assert len(observations(service)) == before + 1


def test_only_valid_resources_are_marked_validated() -> None:
    good = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    bad = {"resourceType": "Observation", "status": "no-such-status", "code": {"text": "x"}}
    assert valid([good, bad]) == frozenset({id(good)})


def test_index_rows_extracted_beforehand_are_the_ones_stored(service: FhirService) -> None:
    handler = OruHandler(None, Remembered())
    handle(service, handler, prebuilt(handler, 0, service))
    second = prebuilt(handler, 1, service)
    built: Prebuilt = second.derived[PREBUILT]
    assert len(built.rows) == 2 and built.registry is service.registry
    handle(service, handler, second)
    patient = one(search(service, "Patient"))
    found = search(service, "Observation", code="147842", subject=f"Patient/{patient['id']}",
                   date="2026-01-01T12:01:00+00:00")
    assert one(found)["valueQuantity"]["value"] == 61  # type: ignore[index]


def test_a_search_parameter_added_after_the_build_indexes_the_message(
        service: FhirService) -> None:
    handler = OruHandler(None, Remembered())
    handle(service, handler, prebuilt(handler, 0, service))
    second = prebuilt(handler, 1, service)
    assert second.derived[PREBUILT].rows  # extracted with the registry before the change
    response = service.handle(FhirRequest("POST", "SearchParameter", body={
        "resourceType": "SearchParameter", "url": "urn:test:obx-text", "name": "obxtext",
        "status": "active", "code": "obx-text", "base": ["Observation"], "type": "string",
        "expression": "Observation.code.text", "description": "test"}))
    assert response.status == 201, response.body_dict()
    handled = handle(service, handler, second)
    written = {r.split("/")[1] for r in handled.written}
    found = search(service, "Observation", **{"obx-text": "MDC_ECG_HEART_RATE"})
    assert written & {o["id"] for o in found}
