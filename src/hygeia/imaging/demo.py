"""What ``hygeia serve --demo`` shows of the imaging pillar: one CT study in the record.

The study is pydicom's own small CT test image (shipped inside pydicom, so no
download) under UIDs of its own, given the first demo patient's identifier as its
PatientID so that it links to that patient instead of creating one for
reconciliation: a newcomer sees an ImagingStudy on a patient they already know, its
DICOMweb answers, and the rendered slice. Storing it twice (a second ``--demo`` on
the same database) is idempotent, as for any instance.
"""

from __future__ import annotations

import io
import logging

import orjson
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hygeia.fhir.search.query import parse_query
from hygeia.imaging.archive import Archive, Stored
from hygeia.imaging.linking import Linker, LinkSettings
from hygeia.server.extensions import Host

log = logging.getLogger("hygeia.imaging.demo")

SAMPLE = "CT_small.dcm"  # one 128x128 CT slice, part of pydicom's package data


def first_patient_identifier(host: Host) -> tuple[str, str] | None:
    """The first demo patient's id and one identifier value (the DICOM PatientID)."""
    with host.reader() as session:
        query = parse_query("Patient", [("_sort", "_id"), ("_count", "1")],
                            registry=session.registry)
        for stored in session.search(query).matches:
            patient = orjson.loads(stored.content or b"{}")
            for identifier in patient.get("identifier") or []:
                if identifier.get("value"):
                    return str(patient.get("id") or stored.id), str(identifier["value"])
    return None


def demo_uid(keyword: str) -> str:
    """UIDs of the demo's own: the guides send the same sample file, which must arrive
    as new data (the archive keeps the first copy of a SOP Instance UID); the same on
    every run, so a second ``--demo`` on one database stores nothing twice."""
    return str(generate_uid(entropy_srcs=["hygeia serve --demo", SAMPLE, keyword]))


def store_demo_study(host: Host, archive: Archive) -> tuple[str, Stored] | None:
    """Store the sample CT for the first demo patient and write its ImagingStudy;
    the patient's id and the stored instance, or None when there is no demo patient."""
    found = first_patient_identifier(host)
    path = get_testdata_file(SAMPLE, download=False)
    if found is None or path is None:
        return None
    patient_id, identifier = found
    dataset = dcmread(path)
    dataset.PatientID = identifier
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(dataset, keyword, demo_uid(keyword))
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    stored = archive.store_bytes(buffer.getvalue(), source_ae="DEMO")
    Linker(host, archive, LinkSettings()).run_once(everything=True)
    return patient_id, stored


def demo_lines(host: Host, archive: Archive, fhir_base: str,
               dicom: tuple[str, int] | None) -> list[str]:
    """Store the demo study; the ready-to-paste lines that show it."""
    root = fhir_base.removesuffix("/fhir")
    lines = ["Imaging pillar (DICOM, DICOMweb; docs/guide/imaging.md):"]
    demo = store_demo_study(host, archive)
    if demo is not None:
        patient_id, stored = demo
        instance = (f"{root}/dicomweb/studies/{stored.study_uid}/series/{stored.series_uid}"
                    f"/instances/{stored.sop_instance}")
        lines += [f"  curl -s '{fhir_base}/ImagingStudy?patient={patient_id}'",
                  f"  curl -s '{root}/dicomweb/studies?PatientID=*' -H 'Accept: "
                  "application/dicom+json'",
                  f"  curl -s '{instance}/rendered' -H 'Accept: image/png' -o slice.png"]
    if dicom is None:
        lines.append("  DICOM is off: add --dicom-port 11112 to receive images from "
                     "modalities and PACS.")
    else:
        address, port = dicom
        lines += [f"  DICOM on {address}:{port} (AE title HYGEIA): send a study with",
                  f"  python -m pynetdicom storescu {address} {port} -aec HYGEIA FILE.dcm"]
    return lines
