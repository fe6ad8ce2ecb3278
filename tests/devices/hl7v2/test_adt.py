"""ADT messages (fixtures written from HL7 v2.5 chapter 3) keep Patient, Encounter and
Location current on SQLite and PostgreSQL; ``patient_in_bed`` finds who lay in a bed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import hl7
import orjson
import pytest

from hygeia.devices.hl7v2.adt import HANDLES, LOCATION_SYSTEM, location_value, patient_in_bed
from hygeia.devices.hl7v2.handling import Handled, Received, Rejected
from hygeia.fhir.search.query import parse_query
from hygeia.server import FhirService
from tests.conftest import FIXTURES

MRN = "urn:hygeia:hl7v2:assigner:GOODHEALTH|MRN12345"


def message(text: str) -> Received:
    parsed = hl7.parse(text.replace("\n", "\r").strip("\r"))
    msh = parsed.segment("MSH")
    return Received(parsed, text, f"{msh(3)}|{msh(4)}", str(msh(10)),
                    f"{msh(9)(1)(1)}^{msh(9)(1)(2)}", datetime.now(UTC))


def handle(service: FhirService, text: str) -> Handled:
    received = message(text)
    with service.transaction() as session:
        return HANDLES[received.message_type](received, session)


def fixture(name: str) -> str:
    return (FIXTURES / "hl7v2" / f"{name}.hl7").read_text()


def found(service: FhirService, resource_type: str, *params: tuple[str, str]
          ) -> list[dict[str, Any]]:
    with service.reader() as session:
        page = session.search(parse_query(resource_type, list(params),
                                          registry=session.registry))
        return [orjson.loads(match.content) for match in page.matches if match.content]


def test_an_admission_creates_the_patient_the_visit_and_the_bed(service: FhirService) -> None:
    handled = handle(service, fixture("adt_a01"))
    [patient] = found(service, "Patient", ("identifier", MRN))
    assert patient["name"][0] == {"use": "official", "family": "Everyman",
                                  "given": ["Adam", "A"]}
    assert (patient["birthDate"], patient["gender"]) == ("1980-06-15", "male")
    assert {identifier["value"] for identifier in patient["identifier"]} == \
        {"MRN12345", "123456789"}
    [encounter] = found(service, "Encounter", ("identifier", "V1001"))
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    assert encounter["period"] == {"start": "2024-03-01T07:55:00+00:00"}
    [stay] = encounter["location"]
    assert stay["status"] == "active" and stay["period"] == {"start": "2024-03-01T07:55:00+00:00"}
    [bed] = found(service, "Location", ("identifier", f"{LOCATION_SYSTEM}|GOODHEALTH/ICU/101/A"))
    assert stay["location"]["reference"] == f"Location/{bed['id']}"
    assert bed["physicalType"]["coding"][0]["code"] == "bd"
    [room] = found(service, "Location", ("_id", bed["partOf"]["reference"].split("/")[1]))
    assert room["identifier"][0]["value"] == "GOODHEALTH/ICU/101/"
    assert room["physicalType"]["coding"][0]["code"] == "ro"
    [ward] = found(service, "Location", ("_id", room["partOf"]["reference"].split("/")[1]))
    assert ward["identifier"][0]["value"] == "GOODHEALTH/ICU//"
    assert f"Patient/{patient['id']}" in handled.written
    assert f"Encounter/{encounter['id']}" in handled.written


def test_the_same_admission_twice_changes_nothing(service: FhirService) -> None:
    handle(service, fixture("adt_a01"))
    handle(service, fixture("adt_a01"))
    [patient] = found(service, "Patient", ("identifier", MRN))
    [encounter] = found(service, "Encounter", ("identifier", "V1001"))
    assert patient["meta"]["versionId"] == encounter["meta"]["versionId"] == "1"
    assert len(found(service, "Location")) == 3


def test_transfer_update_and_discharge_follow_the_patient(service: FhirService) -> None:
    for name in ("adt_a01", "adt_a02", "adt_a08", "adt_a03"):
        handle(service, fixture(name))
    [encounter] = found(service, "Encounter", ("identifier", "V1001"))
    assert encounter["status"] == "finished"
    assert encounter["period"] == {"start": "2024-03-01T07:55:00+00:00",
                                   "end": "2024-03-05T11:30:00+00:00"}
    icu, ward = encounter["location"]
    assert icu["status"] == ward["status"] == "completed"
    assert icu["period"] == {"start": "2024-03-01T07:55:00+00:00",
                             "end": "2024-03-02T09:30:00+00:00"}
    assert ward["period"] == {"start": "2024-03-02T09:30:00+00:00",
                              "end": "2024-03-05T11:30:00+00:00"}
    [patient] = found(service, "Patient", ("identifier", MRN))
    assert patient["address"][0]["line"] == ["9 New Road"]  # A08's demographics
    assert patient["name"][0]["given"] == ["Adam", "Alexander"]


def test_patient_in_bed_names_who_lay_there_at_that_time(service: FhirService) -> None:
    for name in ("adt_a01", "adt_a02", "adt_a03"):
        handle(service, fixture(name))
    [patient] = found(service, "Patient", ("identifier", MRN))
    icu, ward = "GOODHEALTH/ICU/101/A", location_value("WARD2", "205", "B", "GOODHEALTH")
    with service.reader() as session:
        assert patient_in_bed(session, icu, datetime(2024, 3, 1, 12, tzinfo=UTC)) == \
            f"Patient/{patient['id']}"
        assert patient_in_bed(session, icu, datetime(2024, 3, 2, 9, 30, tzinfo=UTC)) is None
        assert patient_in_bed(session, ward, datetime(2024, 3, 2, 9, 30)) == \
            f"Patient/{patient['id']}"  # naive: UTC
        assert patient_in_bed(session, ward, datetime(2024, 3, 5, 12, tzinfo=UTC)) is None
        assert patient_in_bed(session, "GOODHEALTH/NOWHERE//", datetime.now(UTC)) is None


def test_two_patients_in_one_bed_at_once_is_never_guessed(service: FhirService) -> None:
    handle(service, fixture("adt_a01"))
    other = fixture("adt_a01").replace("MRN12345", "MRN55555").replace("V1001", "V5555") \
        .replace("123456789^^^SSA^SS", "55555^^^SSA^SS").replace("ADT0001", "ADT5555")
    handle(service, other)
    with service.reader() as session:
        assert patient_in_bed(session, "GOODHEALTH/ICU/101/A",
                              datetime(2024, 3, 1, 12, tzinfo=UTC)) is None


def test_patients_are_matched_by_identifier_never_by_name(service: FhirService) -> None:
    handle(service, fixture("adt_a04"))
    namesake = fixture("adt_a04").replace("MRN67890", "MRN00001").replace("V2002", "V0001")
    handle(service, namesake)
    assert len(found(service, "Patient", ("family", "Patient"), ("given", "Olivia"))) == 2
    [encounter] = found(service, "Encounter", ("identifier", "V2002"))
    assert encounter["class"]["code"] == "AMB"


def test_identifiers_of_two_patients_in_one_message_are_refused(service: FhirService) -> None:
    handle(service, fixture("adt_a01"))
    handle(service, fixture("adt_a04"))
    both = fixture("adt_a01").replace("MRN12345^^^GOODHEALTH^MR~",
                                      "MRN12345^^^GOODHEALTH^MR~MRN67890^^^GOODHEALTH^MR~")
    with pytest.raises(Rejected) as refused:
        handle(service, both)
    assert (refused.value.hl7_code, refused.value.location) == ("205", "PID^1^3")


@pytest.mark.parametrize(("change", "code", "location"), [
    (lambda text: text.replace("|V1001^^^GOODHEALTH^VN", "|"), "101", "PV1^1^19"),
    (lambda text: text.replace("MRN12345^^^GOODHEALTH^MR~123456789^^^SSA^SS", ""), "101",
     "PID^1^3"),
    (lambda text: text.replace("|20240301075500+0000\nPID", "|2024-03-01 noon\nPID"), "102",
     "EVN^1^6"),
    (lambda text: "\n".join(line for line in text.splitlines() if not line.startswith("PID")),
     "100", "PID"),
], ids=["no-visit-number", "no-patient-identifier", "bad-event-time", "no-pid"])
def test_a_message_missing_what_it_needs_is_refused_with_the_field(
        service: FhirService, change: Any, code: str, location: str) -> None:
    with pytest.raises(Rejected) as refused:
        handle(service, change(fixture("adt_a01")))
    assert (refused.value.hl7_code, refused.value.location) == (code, location)


def test_a_bed_used_by_two_patients_in_turn_names_each_at_their_time(
        service: FhirService) -> None:
    handle(service, fixture("adt_a01"))
    discharge = fixture("adt_a03").replace("WARD2^205^B", "ICU^101^A")
    handle(service, discharge)
    later = fixture("adt_a01").replace("MRN12345", "MRN77777").replace("V1001", "V7777") \
        .replace("123456789^^^SSA^SS", "77777^^^SSA^SS").replace("20240301075500", "20240306100000")
    handle(service, later)
    [first] = found(service, "Patient", ("identifier", MRN))
    [second] = found(service, "Patient", ("identifier", "MRN77777"))
    bed = "GOODHEALTH/ICU/101/A"
    with service.reader() as session:
        assert patient_in_bed(session, bed, datetime(2024, 3, 4, tzinfo=UTC)) == \
            f"Patient/{first['id']}"
        assert patient_in_bed(session, bed, datetime(2024, 3, 5, 12, tzinfo=UTC)) is None
        assert patient_in_bed(session, bed, datetime(2024, 3, 7, tzinfo=UTC)) == \
            f"Patient/{second['id']}"


@pytest.mark.parametrize(("cx", "system"), [
    ("X1^^^&2.16.840.1.113883.19.5&ISO^MR", "urn:oid:2.16.840.1.113883.19.5"),
    ("X1^^^&https://ids.example.org/mrn&URI^MR", "https://ids.example.org/mrn"),
    ("X1^^^^MR^CLINIC7", "urn:hygeia:hl7v2:assigner:CLINIC7"),  # the assigning facility
    ("X1", "urn:hygeia:hl7v2:assigner:GOODHEALTH"),  # the sending facility, MSH-4
])
def test_the_assigning_authority_becomes_the_identifier_system(
        service: FhirService, cx: str, system: str) -> None:
    handle(service, fixture("adt_a04").replace("MRN67890^^^GOODHEALTH^MR", cx))
    [patient] = found(service, "Patient", ("identifier", f"{system}|X1"))
    assert patient["identifier"][0]["system"] == system
