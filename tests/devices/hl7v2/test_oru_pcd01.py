"""PCD-01 monitor messages become searchable Observations, Devices and DeviceMetrics."""

from __future__ import annotations

import pytest

from hygeia.devices.hl7v2.flags import ABSENT, INTERPRETATION, PCD_ALARM
from hygeia.devices.hl7v2.handling import Rejected
from hygeia.devices.hl7v2.identity import EUI64_SYSTEM, LOCATION_SYSTEM, OBX_SYSTEM
from hygeia.devices.hl7v2.mdc import MDC
from hygeia.devices.hl7v2.oru import oru_handler
from hygeia.server import FhirRequest, FhirService
from tests.devices.hl7v2.oru_helpers import message_text, one, process, read, search

LOINC = "http://loinc.org"
EUI64 = "0123456789ABCDEF"


def patient_of_monitor(service: FhirService) -> str:
    found = search(service, "Patient", identifier="urn:hygeia:hl7v2:assigner:HOSP|MRN-1001")
    return "Patient/" + one(found)["id"]


def test_vital_signs_are_searchable_by_patient_and_loinc(service: FhirService) -> None:
    handled = process(service, message_text("oru_pcd01_monitor.hl7"))
    patient = patient_of_monitor(service)
    assert patient in handled.written
    heart = one(search(service, "Observation", patient=patient, code=f"{LOINC}|8867-4"))
    codes = {(c["system"], c["code"]) for c in heart["code"]["coding"]}
    assert codes == {(MDC, "147842"), (LOINC, "8867-4")}
    assert heart["valueQuantity"] == {"value": 72, "unit": "/min",
                                      "system": "http://unitsofmeasure.org", "code": "/min"}
    assert heart["effectiveDateTime"] == "2024-03-15T10:15:00+01:00"
    assert heart["status"] == "preliminary"  # OBX-11 R: entered, not verified
    assert heart["referenceRange"][0]["low"]["value"] == 50
    assert heart["referenceRange"][0]["high"]["value"] == 120
    assert heart["referenceRange"][0]["text"] == "alarm limits: 50-120"
    assert heart["category"][0]["coding"][0]["code"] == "vital-signs"
    expected = {"59408-5": ("%", 97), "9279-1": ("/min", 16), "8310-5": ("Cel", 37.2),
                "29463-7": ("kg", 71.5)}
    for loinc, (unit, value) in expected.items():
        found = one(search(service, "Observation", patient=patient, code=f"{LOINC}|{loinc}"))
        assert (found["valueQuantity"]["code"], found["valueQuantity"]["value"]) == (unit, value)
    assert one(search(service, "Observation", code=f"{LOINC}|2708-6"))["valueQuantity"][
        "value"] == 97


def test_blood_pressure_is_one_panel_with_components(service: FhirService) -> None:
    process(service, message_text("oru_pcd01_monitor.hl7"))
    panel = one(search(service, "Observation", code=f"{LOINC}|85354-9"))
    assert panel["code"]["coding"][0]["code"] == "85354-9"
    components = {c["code"]["coding"][1]["code"]: c["valueQuantity"]
                  for c in panel["component"]}
    assert {k: (v["value"], v["code"]) for k, v in components.items()} == {
        "8480-6": (128, "mm[Hg]"), "8462-4": (82, "mm[Hg]"), "8478-0": (97, "mm[Hg]")}
    assert panel["effectiveDateTime"] == "2024-03-15T10:14:00+01:00"
    assert not search(service, "Observation", code=f"{LOINC}|8480-6")  # components only
    found = one(search(service, "Observation", **{"component-code": f"{LOINC}|8480-6"}))
    assert found["id"] == panel["id"]


def test_device_tree_and_observation_device(service: FhirService) -> None:
    process(service, message_text("oru_pcd01_monitor.hl7"))
    monitor = one(search(service, "Device", identifier=f"{EUI64_SYSTEM}|{EUI64}"))
    assert monitor["type"]["coding"][0]["code"] == "69965"
    assert "parent" not in monitor
    observations = search(service, "Observation", device=f"Device/{monitor['id']}")
    assert len(observations) == 6  # HR, SpO2, RR, the BP panel, temperature, weight
    metrics = search(service, "DeviceMetric", source=f"Device/{monitor['id']}")
    assert len(metrics) == 8  # one per measured metric (the 3 BP components each)
    heart_metric = one([m for m in metrics if m["type"]["coding"][0]["code"] == "147842"])
    assert heart_metric["unit"]["coding"][0]["code"] == "/min"
    channel = read(service, heart_metric["parent"]["reference"])
    vmd = read(service, channel["parent"]["reference"])
    assert vmd["parent"]["reference"] == f"Device/{monitor['id']}"
    assert channel["identifier"][0]["value"].endswith(f"{EUI64}/1.1")


def test_replay_stores_nothing_twice(service: FhirService) -> None:
    raw = message_text("oru_pcd01_monitor.hl7")
    first = process(service, raw)
    again = process(service, raw)
    # the patient, 6 observations, the MDS, 6 VMDs and their 6 channels, 8 metrics
    assert len(first.written) == 1 + 6 + 1 + 6 + 6 + 8
    assert again.written == []
    for resource_type in ("Observation", "Device", "DeviceMetric", "Patient"):
        for resource in search(service, resource_type):
            assert resource["meta"]["versionId"] == "1", resource["id"]
    heart = one(search(service, "Observation", code=f"{LOINC}|8867-4"))
    key = heart["identifier"][0]
    assert key["system"] == OBX_SYSTEM
    assert one(search(service, "Observation", identifier=f"{OBX_SYSTEM}|{key['value']}"))


def test_alarm_flags_absent_values_and_private_codes(service: FhirService) -> None:
    handled = process(service, message_text("oru_pcd01_alarm.hl7"))
    patient = patient_of_monitor(service)
    heart = one(search(service, "Observation", patient=patient, code=f"{MDC}|147842",
                       date="2024-03-15T10:20:00+01:00"))
    flags = {(c["coding"][0]["system"], c["coding"][0]["code"]) for c in heart["interpretation"]}
    assert flags == {(INTERPRETATION, "H"), (PCD_ALARM, "PHY"), (PCD_ALARM, "PM")}
    assert heart["status"] == "final"
    assert any("alarm" in note for note in handled.notes)
    spo2 = one(search(service, "Observation", code=f"{LOINC}|59408-5"))
    assert spo2["dataAbsentReason"]["coding"][0] == {"system": ABSENT, "code": "temp-unknown"}
    assert spo2["status"] == "cancelled" and "valueQuantity" not in spo2
    resp = one(search(service, "Observation", code=f"{LOINC}|9279-1"))
    assert resp["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"
    vendor = one(search(service, "Observation", code=f"{MDC}|192512"))
    assert {c["code"] for c in vendor["code"]["coding"]} == {"192512", "149530", "8867-4",
                                                             "8889-8"}
    unknown = one(search(service, "Observation", code=f"{MDC}|192600"))
    assert [c["code"] for c in unknown["code"]["coding"]] == ["192600"]
    assert any("192600" in note and "private" in note for note in handled.notes)


def test_a_loinc_coded_row_in_a_device_message_keeps_its_loinc_code(
        service: FhirService) -> None:
    raw = message_text("oru_pcd01_monitor.hl7").replace(
        "188736^MDC_MASS_BODY_ACTUAL^MDC|1.6.1.1|71.5|263875^MDC_DIM_KILO_G^MDC",
        "29463-7^Body weight^LN|1.6.1.1|71.5|kg^kilogram^UCUM")
    process(service, raw)
    weight = one(search(service, "Observation", code=f"{LOINC}|29463-7"))
    assert weight["code"]["coding"] == [{"system": LOINC, "code": "29463-7",
                                         "display": "Body weight"}]
    assert weight["category"][0]["coding"][0]["code"] == "vital-signs"
    assert weight["valueQuantity"] == {"value": 71.5, "unit": "kilogram",
                                       "system": "http://unitsofmeasure.org", "code": "kg"}
    assert weight["device"]["reference"].startswith("Device/")


def add_patient_in_bed(service: FhirService, bed: str, since: str = "2024-03-15T08:00:00Z"
                       ) -> str:
    """A Patient with an in-progress Encounter whose stay in the Location of ``bed``
    began at ``since`` (as the ADT handlers record it)."""
    with service.transaction() as session:
        from hygeia.server.rest import write
        patient = write.create(session, "Patient", {"resourceType": "Patient",
                                                    "name": [{"family": "Bed"}]})
        location = write.create(session, "Location", {
            "resourceType": "Location", "identifier": [{"system": LOCATION_SYSTEM,
                                                         "value": bed}]})
        patient_id = patient.body_dict()["id"]  # type: ignore[index]
        write.create(session, "Encounter", {
            "resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "IMP"},
            "subject": {"reference": f"Patient/{patient_id}"}, "period": {"start": since},
            "location": [{"period": {"start": since}, "location": {
                "reference": f"Location/{location.body_dict()['id']}"}}]})  # type: ignore[index]
    return f"Patient/{patient_id}"


def test_sparse_pid_is_attributed_through_the_bed(service: FhirService) -> None:
    patient = add_patient_in_bed(service, "HOSP/ICU/12/1")
    add_patient_in_bed(service, "HOSP/ICU/12/2")  # the neighbour must not be chosen
    handled = process(service, message_text("oru_pcd01_bed.hl7"))
    assert handled.notes == []
    heart = one(search(service, "Observation", patient=patient, code=f"{LOINC}|8867-4"))
    assert heart["valueQuantity"]["value"] == 80


def test_a_patient_who_arrived_after_the_measurement_is_not_given_it(
        service: FhirService) -> None:
    add_patient_in_bed(service, "HOSP/ICU/12/1", since="2024-03-15T09:31:00Z")  # 10:31+01:00
    handled = process(service, message_text("oru_pcd01_bed.hl7"))  # measured 10:30+01:00
    assert any("HOSP/ICU/12/1" in note for note in handled.notes)
    assert "subject" not in one(search(service, "Observation", code=f"{LOINC}|8867-4"))


def test_the_adt_bed_lookup_is_asked_when_wired_in(service: FhirService) -> None:
    asked: list[tuple[str, str | None]] = []
    patient = add_patient_in_bed(service, "ELSEWHERE/1/1/1")

    def in_bed(session: object, bed: str, at: str | None) -> str | None:
        asked.append((bed, at))
        return patient

    process(service, message_text("oru_pcd01_bed.hl7"), oru_handler(in_bed))
    assert asked == [("HOSP/ICU/12/1", "2024-03-15T10:30:00+01:00")]
    assert one(search(service, "Observation", patient=patient))


def test_unattributable_data_is_kept_and_reported(service: FhirService) -> None:
    raw = message_text("oru_pcd01_bed.hl7")  # nobody is in the bed
    handled = process(service, raw)
    assert any("HOSP/ICU/12/1" in note for note in handled.notes)
    heart = one(search(service, "Observation", code=f"{LOINC}|8867-4"))
    assert "subject" not in heart
    assert "without a patient" in heart["note"][0]["text"]
    assert not search(service, "Patient")


def replace_line(raw: str, start: str, new: str) -> str:
    lines = raw.split("\r")
    index = next(i for i, line in enumerate(lines) if line.startswith(start))
    lines[index] = new
    return "\r".join(lines)


@pytest.mark.parametrize(("start", "line", "location", "code"), [
    ("OBX|2|", "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|seventy-two|"
               "264864^MDC_DIM_BEAT_PER_MIN^MDC", "OBX^2^5", "102"),
    ("OBX|2|", "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72|999999^MDC_DIM_NOPE^MDC",
     "OBX^2^6", "103"),
    ("OBX|2|", "OBX|2|NM||1.1.1.1|72", "OBX^2^3", "101"),
    ("OBX|2|", "OBX|2|NM|^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72", "OBX^2^3", "101"),
    ("OBX|2|", "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72||||||R|||2024-03-15",
     "OBX^2^14", "102"),
    ("OBX|2|", "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|bed one|72", "OBX^2^4", "102"),
    ("OBX|2|", "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72||||||Q", "OBX^2^11", "103"),
    ("OBX|2|", "OBX|2|XYZ|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72", "OBX^2^2", "102"),
    ("OBR|", "OBR|1|||x|||not-a-time", "OBR^1^7", "102"),
])
def test_what_cannot_be_processed_is_rejected_and_leaves_no_trace(
        service: FhirService, start: str, line: str, location: str, code: str) -> None:
    raw = replace_line(message_text("oru_pcd01_monitor.hl7"), start, line)
    with pytest.raises(Rejected) as rejected:
        process(service, raw)
    assert (rejected.value.location, rejected.value.hl7_code) == (location, code)
    assert rejected.value.text
    for resource_type in ("Patient", "Observation", "Device", "DeviceMetric"):
        assert not search(service, resource_type), resource_type


def test_a_message_without_results_is_rejected(service: FhirService) -> None:
    raw = "\r".join(line for line in message_text("oru_pcd01_monitor.hl7").split("\r")
                    if not line.startswith("OBX"))
    with pytest.raises(Rejected) as rejected:
        process(service, raw)
    assert rejected.value.location == "OBX^1"
    response = service.handle(FhirRequest("GET", "Patient"))
    assert response.body_dict()["total"] == 0  # type: ignore[index]


def test_concurrent_first_messages_from_one_monitor_make_one_device_tree(
        service: FhirService) -> None:
    from concurrent.futures import ThreadPoolExecutor
    raw = message_text("oru_pcd01_monitor.hl7")
    # 10:10 ... 10:15, each for another patient (whose lock would otherwise serialise them)
    messages = [raw.replace("20240315101500+0100", f"202403151{minute}00+0100")
                .replace("MRN-1001", f"MRN-200{minute}") for minute in range(6)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda text: process(service, text), messages))
    assert all(result.written for result in results)
    assert len(search(service, "Patient")) == 6
    assert len(search(service, "Device")) == 13
    assert len(search(service, "DeviceMetric")) == 8
    assert len(search(service, "Observation", code=f"{LOINC}|8867-4")) == 6
    assert all(r["meta"]["versionId"] == "1" for r in search(service, "Device"))
