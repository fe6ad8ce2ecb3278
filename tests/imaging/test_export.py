"""Bulk Data ``$export`` of a real server includes the ImagingStudy (and its Endpoint)
that a C-STORE and a STOW-RS made."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pydicom

from tests.imaging.conftest import (
    AE_TITLE,
    DicomServer,
    imaging_study,
    make_instance,
    make_study,
    pynetdicom_app,
    unique,
)

KICK_OFF = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def export(client: httpx.Client, path: str, **params: str) -> dict[str, list[dict[str, Any]]]:
    """Run ``path`` (``$export``, ``Patient/$export``) to the end; its NDJSON lines by
    resource type."""
    kicked = client.get(path, params=params, headers=KICK_OFF)
    assert kicked.status_code == 202, kicked.text
    status_url = kicked.headers["Content-Location"]
    deadline = time.monotonic() + 120
    while (done := client.get(status_url)).status_code == 202:
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.2)
    assert done.status_code == 200, done.text
    found: dict[str, list[dict[str, Any]]] = {}
    for item in done.json()["output"]:
        answer = client.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
        assert answer.status_code == 200
        lines = [orjson.loads(line) for line in answer.content.splitlines() if line]
        assert len(lines) == item["count"]
        found.setdefault(item["type"], []).extend(lines)
    return found


def stow(dicom: DicomServer, data: bytes) -> None:
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--b--\r\n"
    answer = httpx.post(f"http://127.0.0.1:{dicom.process.port}/dicomweb/studies",
                        content=body, timeout=60, headers={
                            "Content-Type": 'multipart/related; type="application/dicom"; '
                                            "boundary=b",
                            "Accept": "application/dicom+json"})
    assert answer.status_code == 200, answer.text


def test_export_includes_the_imaging_studies_of_c_store_and_stow_rs(
        dicom: DicomServer, tmp_path: Path) -> None:
    patient = f"P{unique()}"
    by_c_store, _ = make_study(tmp_path / "dimse", 2, PatientID=patient)
    sent = pynetdicom_app("storescu", "127.0.0.1", str(dicom.port), str(tmp_path / "dimse"),
                          "-r", "-aec", AE_TITLE)
    assert sent.returncode == 0, sent.stderr
    stowed = make_instance(tmp_path, PatientID=patient)
    by_stow = str(pydicom.dcmread(stowed).StudyInstanceUID)
    stow(dicom, stowed.read_bytes())
    studies = {uid: imaging_study(dicom.client, uid, instances=count)
               for uid, count in ((by_c_store, 2), (by_stow, 1))}
    subject = studies[by_c_store]["subject"]["reference"]
    assert studies[by_stow]["subject"]["reference"] == subject

    everything = export(dicom.client, "$export", _type="ImagingStudy,Endpoint")
    exported = {line["id"]: line for line in everything.get("ImagingStudy", [])}
    for uid, resource in studies.items():
        assert resource["id"] in exported, f"the ImagingStudy of {uid} was not exported"
        line = exported[resource["id"]]
        assert (resource["identifier"][0]["system"], resource["identifier"][0]["value"]) == \
            ("urn:dicom:uid", f"urn:oid:{uid}")
        assert line["identifier"] == resource["identifier"]
        assert line["numberOfInstances"] == resource["numberOfInstances"]
        endpoint = line["endpoint"][0]["reference"].split("/")[-1]
        assert endpoint in {e["id"] for e in everything.get("Endpoint", [])}

    # the patient compartment export carries them too
    patients = export(dicom.client, "Patient/$export", _type="Patient,ImagingStudy")
    assert {s["id"] for s in studies.values()} <= \
        {line["id"] for line in patients.get("ImagingStudy", [])}
    assert subject.split("/")[-1] in {line["id"] for line in patients.get("Patient", [])}
