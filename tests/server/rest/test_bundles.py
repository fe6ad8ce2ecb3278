"""Batch and transaction Bundles through the service, on both backends."""

from __future__ import annotations

import base64

import orjson
import pytest

from hygeia.fhir.outcome import (
    BadRequest,
    Gone,
    PayloadTooLarge,
    PreconditionFailed,
    Unprocessable,
)
from hygeia.server import FhirService, Settings
from hygeia.store import Repository
from tests.helpers import body, call, patient, synthea_bundle, unique


def transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post(resource: dict, full_url: str | None = None, **request: str) -> dict:
    entry: dict = {"resource": resource,
                   "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def count(service: FhirService, query: str) -> int:
    return int(body(call(service, "GET", query))["total"])


def test_synthea_bundle_loads_as_one_transaction(service: FhirService) -> None:
    bundle = synthea_bundle("001")
    assert len(bundle["entry"]) == 273
    response = body(call(service, "POST", "", bundle))
    assert response["type"] == "transaction-response"
    assert len(response["entry"]) == 273
    assert all(e["response"]["status"] == "201" for e in response["entry"])
    patient_id = response["entry"][0]["fullUrl"].rsplit("/", 1)[1]
    encounter = next(e for e in response["entry"] if "/Encounter/" in e["fullUrl"])
    stored = body(call(service, "GET", encounter["response"]["location"].split("/fhir/")[1]))
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"  # urn:uuid rewritten


def test_transaction_is_atomic(service: FhirService) -> None:
    key = unique()
    bad = transaction(post(patient(key)), post({"resourceType": "Observation"}))  # no status
    with pytest.raises(Unprocessable) as raised:
        call(service, "POST", "", bad)
    assert any(i.expression and i.expression.startswith("Bundle.entry[1].resource")
               for i in raised.value.issues)
    assert count(service, f"Patient?identifier={key}") == 0


def test_failure_in_execution_rolls_back_earlier_writes(service: FhirService) -> None:
    key = unique()
    stale_target = body(call(service, "POST", "Patient", patient(unique())))
    bundle = transaction(
        post(patient(key)),
        {"resource": stale_target, "request": {"method": "PUT",
                                               "url": f"Patient/{stale_target['id']}",
                                               "ifMatch": 'W/"7"'}},
    )
    with pytest.raises(PreconditionFailed) as raised:
        call(service, "POST", "", bundle)
    assert raised.value.issues[0].expression == "Bundle.entry[1]"
    assert count(service, f"Patient?identifier={key}") == 0


def test_processing_order_and_reference_resolution(service: FhirService) -> None:
    doomed = body(call(service, "POST", "Patient", patient(unique())))
    key = unique()
    bundle = transaction(
        {"request": {"method": "GET", "url": f"Patient?identifier={key}"}},
        post({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}}),
        post(patient(key), "urn:uuid:11111111-1111-1111-1111-111111111111"),
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
    )
    response = body(call(service, "POST", "", bundle))
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["200", "201", "201", "204"]
    # GET ran last, so it already sees the patient created in this transaction
    assert response["entry"][0]["resource"]["total"] == 1
    patient_id = response["entry"][2]["fullUrl"].rsplit("/", 1)[1]
    observation = body(call(service, "GET",
                            response["entry"][1]["response"]["location"].split("/fhir/")[1]))
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"


def test_conditional_reference_resolves_in_bundle_and_store(service: FhirService) -> None:
    stored_key, bundle_key = unique(), unique()
    stored = body(call(service, "POST", "Patient", patient(stored_key)))
    bundle = transaction(
        post(patient(bundle_key), "urn:uuid:22222222-2222-2222-2222-222222222222"),
        post({"resourceType": "Observation", "status": "final", "code": {"text": "a"},
              "subject": {"reference": f"Patient?identifier=urn:test|{stored_key}"}}),
        post({"resourceType": "Observation", "status": "final", "code": {"text": "b"},
              "subject": {"reference": f"Patient?identifier=urn:test|{bundle_key}"}}),
    )
    response = body(call(service, "POST", "", bundle))
    new_patient = response["entry"][0]["fullUrl"].rsplit("/", 1)[1]
    refs = [body(call(service, "GET", e["response"]["location"].split("/fhir/")[1]))
            ["subject"]["reference"] for e in response["entry"][1:]]
    assert refs == [f"Patient/{stored['id']}", f"Patient/{new_patient}"]


def test_unresolvable_conditional_reference_fails(service: FhirService) -> None:
    bundle = transaction(post({"resourceType": "Observation", "status": "final",
                               "code": {"text": "a"},
                               "subject": {"reference": f"Patient?identifier={unique()}"}}))
    with pytest.raises(PreconditionFailed, match="matches no resource"):
        call(service, "POST", "", bundle)


def test_conditional_create_inside_transaction(service: FhirService) -> None:
    key = unique()
    existing = body(call(service, "POST", "Patient", patient(key)))
    bundle = transaction(
        post(patient(key), "urn:uuid:33333333-3333-3333-3333-333333333333",
             ifNoneExist=f"identifier=urn:test|{key}"),
        post({"resourceType": "Observation", "status": "final", "code": {"text": "c"},
              "subject": {"reference": "urn:uuid:33333333-3333-3333-3333-333333333333"}}),
    )
    response = body(call(service, "POST", "", bundle))
    assert response["entry"][0]["response"]["status"] == "200"
    observation = body(call(service, "GET",
                            response["entry"][1]["response"]["location"].split("/fhir/")[1]))
    assert observation["subject"]["reference"] == f"Patient/{existing['id']}"
    assert count(service, f"Patient?identifier={key}") == 1


def test_patch_entry_with_binary_body(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient(family="Old")))
    ops = [{"op": "replace", "path": "/name/0/family", "value": "New"}]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(orjson.dumps(ops)).decode()}
    bundle = transaction({"resource": binary, "request": {"method": "PATCH",
                                                          "url": f"Patient/{created['id']}"}})
    call(service, "POST", "", bundle)
    assert body(call(service, "GET", f"Patient/{created['id']}"))["name"][0]["family"] == "New"


def test_fhirpath_patch_entry(service: FhirService) -> None:
    created = body(call(service, "POST", "Patient", patient(family="Old")))
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.name.family"},
        {"name": "value", "valueString": "Newer"}]}]}
    call(service, "POST", "", transaction({"resource": parameters, "request": {
        "method": "PATCH", "url": f"Patient/{created['id']}"}}))
    assert body(call(service, "GET", f"Patient/{created['id']}"))["name"][0]["family"] == "Newer"


def test_same_resource_twice_is_refused(service: FhirService) -> None:
    bundle = transaction(
        {"resource": patient(id="dup1"), "request": {"method": "PUT", "url": "Patient/dup1"}},
        {"request": {"method": "DELETE", "url": "Patient/dup1"}},
    )
    with pytest.raises(BadRequest, match="only once"):
        call(service, "POST", "", bundle)


def test_representation_preference_returns_resources(service: FhirService) -> None:
    response = body(call(service, "POST", "", transaction(post(patient())),
                         prefer_return="representation"))
    assert response["entry"][0]["resource"]["resourceType"] == "Patient"
    minimal = body(call(service, "POST", "", transaction(post(patient()))))
    assert "resource" not in minimal["entry"][0]


def test_batch_entries_fail_independently(service: FhirService) -> None:
    key = unique()
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        post(patient(key)),
        post({"resourceType": "Observation"}),
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {"request": {"method": "BREW", "url": "Coffee"}},
    ]}
    response = body(call(service, "POST", "", batch))
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201", "422", "404", "400"]
    assert response["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count(service, f"Patient?identifier={key}") == 1


def test_bundle_of_wrong_type_is_refused(service: FhirService) -> None:
    with pytest.raises(BadRequest, match="batch or transaction"):
        call(service, "POST", "", {"resourceType": "Bundle", "type": "collection"})


def test_conditional_put_entry_updates_the_match(service: FhirService) -> None:
    key = unique()
    existing = body(call(service, "POST", "Patient", patient(key, family="Before")))
    url = f"Patient?identifier=urn:test|{key}"
    response = body(call(service, "POST", "", transaction(
        {"resource": patient(key, family="After"), "request": {"method": "PUT", "url": url}})))
    assert response["entry"][0]["response"]["status"] == "200"
    assert body(call(service, "GET", f"Patient/{existing['id']}"))["name"][0]["family"] == "After"
    with pytest.raises(BadRequest, match="differs from the matching resource"):
        call(service, "POST", "", transaction(
            {"resource": patient(key, id="someone-else"), "request": {"method": "PUT",
                                                                      "url": url}}))


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_entry_limit_refuses_before_any_entry_runs(repository: Repository, kind: str) -> None:
    limited = FhirService(repository, Settings(max_bundle_entries=3))
    key = unique()
    entries = [post(patient(key)) for _ in range(4)]
    with pytest.raises(PayloadTooLarge, match="4 entries; a batch or transaction may have "
                                              "at most 3") as raised:
        call(limited, "POST", "", {"resourceType": "Bundle", "type": kind, "entry": entries})
    assert raised.value.issues[0].expression == "Bundle.entry"
    assert "$import" in raised.value.issues[0].diagnostics
    assert count(limited, f"Patient?identifier={key}") == 0
    response = body(call(limited, "POST", "", {"resourceType": "Bundle", "type": kind,
                                               "entry": entries[:3]}))
    assert len(response["entry"]) == 3


def test_patch_entries_honour_the_patch_limits(repository: Repository) -> None:
    limited = FhirService(repository, Settings(max_patch_operations=2))
    stored = body(call(limited, "POST", "Patient", patient(unique())))
    operations = [{"op": "test", "path": "/id", "value": stored["id"]}] * 3
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(orjson.dumps(operations)).decode()}
    bundle = transaction({"resource": binary,
                          "request": {"method": "PATCH", "url": f"Patient/{stored['id']}"}})
    with pytest.raises(Unprocessable, match="3 operations; at most 2") as raised:
        call(limited, "POST", "", bundle)
    assert raised.value.issues[0].expression == "Bundle.entry[0]"


def vital(subject: str, code: str, value: float) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": subject},
            "valueQuantity": {"value": value, "unit": "/min",
                              "system": "http://unitsofmeasure.org", "code": "/min"}}


def test_a_monitor_sized_transaction_stores_updates_and_deletes_exactly(
        service: FhirService) -> None:
    """48 entries, the size of 8 monitor readings (on PostgreSQL one combined INSERT, not
    a COPY per table): created, updated (their old index rows gone) and deleted
    resources all read back, and a second Bundle that fails stores none of its 48."""
    subject = f"Patient/{body(call(service, 'POST', 'Patient', patient(unique())))['id']}"
    code = unique()
    first = body(call(service, "POST", "", transaction(
        *(post(vital(subject, code, number)) for number in range(48)))))
    ids = [entry["response"]["location"].split("Observation/")[1].split("/")[0]
           for entry in first["entry"]]
    changed = unique()
    second = transaction(
        *({"resource": {**vital(subject, changed, 500 + number), "id": id},
           "request": {"method": "PUT", "url": f"Observation/{id}"}}
          for number, id in enumerate(ids[:24])),
        {"request": {"method": "DELETE", "url": f"Observation/{ids[24]}"}},
        *(post(vital(subject, changed, 600 + number)) for number in range(23)))
    assert len(body(call(service, "POST", "", second))["entry"]) == 48
    assert count(service, f"Observation?code={code}") == 23
    assert count(service, f"Observation?code={changed}") == 47
    assert count(service, f"Observation?code={changed}&value-quantity=gt599") == 23
    assert count(service, f"Observation?subject={subject}") == 70
    updated = body(call(service, "GET", f"Observation/{ids[3]}"))
    assert updated["meta"]["versionId"] == "2" and updated["valueQuantity"]["value"] == 503
    with pytest.raises(Gone):
        call(service, "GET", f"Observation/{ids[24]}")
    failing = transaction(*(post(vital(subject, code, number)) for number in range(47)),
                          post({"resourceType": "Observation"}))  # no status, no code
    with pytest.raises(Unprocessable):
        call(service, "POST", "", failing)
    assert count(service, f"Observation?subject={subject}") == 70
