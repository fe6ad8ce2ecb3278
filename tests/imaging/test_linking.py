"""Every stored study becomes one ImagingStudy, a few seconds behind the archive, linked to
its Patient (by PatientID, never by name), orders and reports; deleting it (over FHIR or
with ``hygeia imaging delete``) removes the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pydicom

from tests.imaging.conftest import (
    AE_TITLE,
    DicomServer,
    hygeia,
    imaging_study,
    make_instance,
    make_study,
    pynetdicom_app,
    unique,
    wait_for,
)


def send(dicom: DicomServer, paths: list[Path], calling: str = "MODALITY") -> None:
    """One association (pynetdicom's storescu) carrying ``paths``."""
    folder = paths[0].parent
    assert all(path.parent == folder for path in paths)
    result = pynetdicom_app("storescu", "127.0.0.1", str(dicom.port), str(folder), "-r",
                            "-aec", AE_TITLE, "-aet", calling)
    assert result.returncode == 0, result.stderr


def history(client: httpx.Client, id: str) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in
            client.get(f"ImagingStudy/{id}/_history").json().get("entry", [])]


def test_one_association_is_one_version_and_another_association_adds_to_the_study(
        dicom: DicomServer, tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "first", 6, PatientID=f"P{unique()}",
                              StudyDescription="Chest CT", BodyPartExamined="CHEST")
    send(dicom, paths)
    resource = imaging_study(dicom.client, study, instances=6)
    assert resource["id"] == study and resource["description"] == "Chest CT"
    assert resource["series"][0]["bodySite"]["code"] == "51185008"
    assert resource["series"][0]["numberOfInstances"] == 6
    assert [i["number"] for i in resource["series"][0]["instance"]] == [1, 2, 3, 4, 5, 6]
    assert len(history(dicom.client, study)) == 1
    (tmp_path / "later").mkdir()
    later = make_instance(tmp_path / "later", "MR_small.dcm", study=study,
                          PatientID=str(pydicom.dcmread(paths[0]).PatientID))
    send(dicom, [later], calling="MR1")
    updated = imaging_study(dicom.client, study, instances=7)
    assert updated["numberOfSeries"] == 2
    assert {m["code"] for m in updated["modality"]} == {"CT", "MR"}
    assert len(history(dicom.client, study)) == 2
    endpoint = dicom.client.get(updated["endpoint"][0]["reference"]).json()
    assert endpoint["address"].endswith("/dicomweb")
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"


def test_an_unknown_patient_is_created_flagged_and_reused_by_patient_id_not_name(
        dicom: DicomServer, tmp_path: Path) -> None:
    patient_id = f"P{unique()}"
    study, paths = make_study(tmp_path / "a", 1, PatientID=patient_id,
                              PatientName="Doe^Jane", PatientBirthDate="19800102",
                              PatientSex="F")
    send(dicom, paths)
    subject = imaging_study(dicom.client, study)["subject"]["reference"]
    patient = dicom.client.get(subject).json()
    assert patient["identifier"][0]["value"] == patient_id
    assert patient["name"][0]["family"] == "Doe" and patient["birthDate"] == "1980-01-02"
    assert patient["gender"] == "female"
    assert {"system": "urn:hygeia:imaging", "code": "reconcile"}.items() <= \
        patient["meta"]["tag"][0].items()
    flags = dicom.client.get("Flag", params={"subject": subject}).json()
    assert flags["total"] == 1
    again, more = make_study(tmp_path / "b", 1, PatientID=patient_id, PatientName="Other^Name")
    send(dicom, more)
    assert imaging_study(dicom.client, again)["subject"]["reference"] == subject
    namesake, third = make_study(tmp_path / "c", 1, PatientID=f"P{unique()}",
                                 PatientName="Doe^Jane", PatientBirthDate="19800102")
    send(dicom, third)
    assert imaging_study(dicom.client, namesake)["subject"]["reference"] != subject


def test_the_patient_id_is_matched_in_the_system_registered_for_the_sender(
        dicom: DicomServer, tmp_path: Path) -> None:
    system, mrn = f"urn:oid:1.2.3.{unique()[:6].translate(str.maketrans('ABCDEF', '123456'))}", \
        f"M{unique()}"
    title = f"CT{unique()}"[:16]
    same_value_elsewhere = dicom.client.post("Patient", json={
        "resourceType": "Patient", "identifier": [{"system": "urn:other", "value": mrn}]})
    known = dicom.client.post("Patient", json={
        "resourceType": "Patient", "identifier": [{"system": system, "value": mrn}],
        "name": [{"family": "Known"}]})
    assert same_value_elsewhere.status_code == known.status_code == 201
    added = hygeia("imaging", "ae", "add", title, "127.0.0.1", "104", "--patient-system",
                   system, "--db", dicom.db_url)
    assert added.returncode == 0, added.stderr
    study, paths = make_study(tmp_path / "s", 1, PatientID=mrn, PatientName="Whoever")
    send(dicom, paths, calling=title)
    assert imaging_study(dicom.client, study)["subject"]["reference"] == \
        f"Patient/{known.json()['id']}"


def test_orders_and_reports_are_linked_by_accession_number(dicom: DicomServer,
                                                           tmp_path: Path) -> None:
    accession = f"ACC{unique()}"
    patient = dicom.client.post("Patient", json={"resourceType": "Patient"}).json()
    order = dicom.client.post("ServiceRequest", json={
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "identifier": [{"value": accession}], "subject": {"reference": f"Patient/{patient['id']}"},
        "code": {"text": "CT chest"}}).json()
    report = dicom.client.post("DiagnosticReport", json={
        "resourceType": "DiagnosticReport", "status": "preliminary",
        "code": {"text": "CT chest report"}, "basedOn": [{"reference":
                                                          f"ServiceRequest/{order['id']}"}],
        "subject": {"reference": f"Patient/{patient['id']}"}}).json()
    study, paths = make_study(tmp_path / "s", 1, PatientID=f"P{unique()}",
                              AccessionNumber=accession)
    send(dicom, paths)
    resource = imaging_study(dicom.client, study)
    assert resource["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
    assert {"value": accession}.items() <= resource["identifier"][1].items()

    def linked() -> bool:
        current = dicom.client.get(f"DiagnosticReport/{report['id']}").json()
        return {"reference": f"ImagingStudy/{study}"} in current.get("imagingStudy", [])
    wait_for(linked)
    by_accession = dicom.client.get("ImagingStudy", params={"identifier": accession}).json()
    assert by_accession["total"] == 1


def stored(dicom: DicomServer) -> int:
    return sum(1 for path in (dicom.storage / "objects").rglob("*") if path.is_file())


def test_hygeia_imaging_delete_removes_files_index_and_imaging_study(
        dicom: DicomServer, tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "s", 3, PatientID=f"P{unique()}")
    send(dicom, paths)
    imaging_study(dicom.client, study, instances=3)
    before = stored(dicom)
    assert dicom.process.files is not None
    result = hygeia("imaging", "delete", study, "--db", dicom.db_url, "--files",
                    dicom.process.files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == \
        f"deleted study {study}: 3 instances, 3 files, ImagingStudy/{study}"
    assert stored(dicom) == before - 3
    assert dicom.client.get(f"ImagingStudy/{study}").status_code == 410
    missing = hygeia("imaging", "delete", study, "--db", dicom.db_url, "--files",
                     dicom.process.files)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no study")
    bad = hygeia("imaging", "delete", "not-a-uid", "--db", dicom.db_url)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_deleting_the_imaging_study_over_fhir_removes_the_files(dicom: DicomServer,
                                                                tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "s", 2, PatientID=f"P{unique()}")
    send(dicom, paths)
    imaging_study(dicom.client, study, instances=2)
    before = stored(dicom)
    assert dicom.client.delete(f"ImagingStudy/{study}").status_code in (200, 204)
    wait_for(lambda: stored(dicom) == before - 2)
    found = pynetdicom_app("findscu", "127.0.0.1", str(dicom.port), "-aec", AE_TITLE, "-S",
                           "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                           "-v")
    assert "Pending" not in found.stderr
