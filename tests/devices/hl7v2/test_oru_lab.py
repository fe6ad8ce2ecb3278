"""Lab ORU^R01 messages become Observations and a DiagnosticReport per OBR."""

from __future__ import annotations

import pytest

from hygeia.devices.hl7v2.flags import INTERPRETATION
from hygeia.devices.hl7v2.handling import Rejected
from hygeia.devices.hl7v2.identity import FILLER_SYSTEM
from hygeia.server import FhirService
from tests.devices.hl7v2.oru_helpers import message_text, one, process, read, search

LOINC = "http://loinc.org"
NHS = "urn:oid:2.16.840.1.113883.2.1.4.1"


def test_a_lab_panel_becomes_a_report_with_its_results(service: FhirService) -> None:
    handled = process(service, message_text("oru_lab_panel.hl7"))
    patient = one(search(service, "Patient", identifier=f"{NHS}|9434765919"))
    assert patient["name"] == [{"family": "Dupont", "given": ["Marc"]}]
    assert (patient["gender"], patient["birthDate"]) == ("male", "1970-01-01")
    assert {i["system"] for i in patient["identifier"]} == {"urn:hygeia:hl7v2:assigner:HOSP", NHS}
    report = one(search(service, "DiagnosticReport", identifier=f"{FILLER_SYSTEM}COBAS|F-5521",
                        patient=f"Patient/{patient['id']}"))
    assert report["code"]["coding"][0] == {"system": LOINC, "code": "24323-8", "display":
                                           "Comprehensive metabolic 2000 panel - Serum or Plasma"}
    assert report["status"] == "final"
    assert report["effectiveDateTime"] == "2024-03-16T07:45:00+01:00"
    assert report["issued"] == "2024-03-16T08:29:00+01:00"
    assert report["category"][0]["coding"][0]["code"] == "CH"
    assert len(report["result"]) == 5
    assert len(handled.written) == 1 + 5 + 1
    creatinine = read(service, report["result"][1]["reference"])
    assert creatinine["code"]["coding"][0]["code"] == "2160-0"
    assert creatinine["valueQuantity"] == {"value": 1.4, "unit": "mg/dL",
                                           "system": "http://unitsofmeasure.org",
                                           "code": "mg/dL"}
    assert creatinine["interpretation"][0]["coding"][0] == {"system": INTERPRETATION,
                                                            "code": "H"}
    assert creatinine["referenceRange"][0]["low"]["value"] == 0.7
    assert creatinine["effectiveDateTime"] == "2024-03-16T07:45:00+01:00"  # from OBR-7
    assert creatinine["category"][0]["coding"][0]["code"] == "laboratory"
    hemolysis = read(service, report["result"][4]["reference"])
    assert hemolysis["valueString"] == "slight"
    assert hemolysis["code"]["coding"][0]["system"] == "urn:hygeia:hl7v2:code:COBAS:L"
    found = search(service, "Observation", patient=f"Patient/{patient['id']}",
                   code=f"{LOINC}|2823-3")
    assert one(found)["valueQuantity"]["value"] == 3.1


def test_a_correction_updates_the_results_it_corrects(service: FhirService) -> None:
    process(service, message_text("oru_lab_panel.hl7"))
    process(service, message_text("oru_lab_panel.hl7"))  # a replay changes nothing
    process(service, message_text("oru_lab_corrected.hl7"))
    potassium = one(search(service, "Observation", code=f"{LOINC}|2823-3"))
    assert (potassium["status"], potassium["valueQuantity"]["value"]) == ("corrected", 3.4)
    assert potassium["meta"]["versionId"] == "2"
    report = one(search(service, "DiagnosticReport"))
    assert (report["status"], report["meta"]["versionId"]) == ("corrected", "2")
    glucose = one(search(service, "Observation", code=f"{LOINC}|2345-7"))
    assert glucose["meta"]["versionId"] == "1"
    assert len(search(service, "Observation")) == 5
    assert len(search(service, "Patient")) == 1


def test_an_existing_patient_is_found_by_any_of_its_identifiers(service: FhirService) -> None:
    from hygeia.server.rest import write
    with service.transaction() as session:
        write.update(session, "Patient", "known", {
            "resourceType": "Patient", "id": "known",
            "identifier": [{"system": NHS, "value": "9434765919"}]})
    process(service, message_text("oru_lab_panel.hl7"))
    assert len(search(service, "Patient")) == 1
    assert len(search(service, "Observation", patient="Patient/known")) == 5


def test_identifiers_of_two_patients_are_not_guessed_between(service: FhirService) -> None:
    from hygeia.server.rest import write
    with service.transaction() as session:
        for id, (system, value) in {"a": (NHS, "9434765919"), "b": (
                "urn:hygeia:hl7v2:assigner:HOSP", "MRN-2002")}.items():
            write.update(session, "Patient", id, {"resourceType": "Patient", "id": id,
                                                  "identifier": [{"system": system,
                                                                  "value": value}]})
    handled = process(service, message_text("oru_lab_panel.hl7"))
    assert any("more than one Patient" in note for note in handled.notes)
    assert all("subject" not in o for o in search(service, "Observation"))


@pytest.mark.parametrize(("start", "line", "location", "code"), [
    ("OBR|", "OBR|1|||24323-8^Panel^LN", "OBR^1^3", "101"),
    ("OBR|", "OBR|1||F-1^COBAS|24323-8^Panel^LN|||||||||||||||||||||Q", "OBR^1^25", "103"),
    ("OBX|2|", "OBX|2|NM|2160-0^Creatinine^LN||1,4|mg/dL^mg/dL^UCUM", "OBX^2^5", "102"),
])
def test_lab_messages_that_cannot_be_processed(service: FhirService, start: str, line: str,
                                               location: str, code: str) -> None:
    lines = message_text("oru_lab_panel.hl7").split("\r")
    index = next(i for i, text in enumerate(lines) if text.startswith(start))
    lines[index] = line
    with pytest.raises(Rejected) as rejected:
        process(service, "\r".join(lines))
    assert (rejected.value.location, rejected.value.hl7_code) == (location, code)
    assert not search(service, "Observation")
