"""The FHIR side of a study: its ImagingStudy, Patient, Endpoint and the links to orders.

:func:`write_study` (in the linker's transaction) makes the index's view of one
study the current ImagingStudy:

- id: the Study Instance UID when no ImagingStudy carries its identifier yet
  (a UID is a valid FHIR id: digits and dots, at most 64); identifier
  ``urn:dicom:uid|urn:oid:UID`` and the accession number (type ``ACSN``);
- ``subject``: the Patient whose identifier is the PatientID (:func:`patient_for`);
- ``basedOn``: the ServiceRequests whose identifier is the accession number; each
  DiagnosticReport based on one of them (or identified by the accession number)
  gets the ImagingStudy in its ``imagingStudy`` list;
- ``endpoint``: ``Endpoint/hygeia-dicomweb``, the server's WADO-RS base
  (``[base_url]/dicomweb``);
- modality, dates, description, counts, and each series (body site, laterality,
  instances with their SOP class).

Patient matching never goes by name: the PatientID is looked up in
``Patient.identifier`` with the system registered for the sending AE title
(``hygeia imaging ae add ... --patient-system``), else ``--dicom-patient-system``,
else in any system. No match (or several, with no system to tell them apart)
creates a Patient from the DICOM attributes, tagged ``urn:hygeia:imaging|reconcile``
and announced by an alert, for a person to reconcile.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from hygeia.fhir.search.query import parse_query
from hygeia.imaging.index import InstanceRecord, SeriesRecord, StudyRecord
from hygeia.imaging.parsing import json_text
from hygeia.server.alerts import Alert
from hygeia.server.extensions import Host
from hygeia.server.rest import write
from hygeia.store import Session, as_sql

DICOM_UID = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
TAG_SYSTEM = "urn:hygeia:imaging"
RECONCILE = {"system": TAG_SYSTEM, "code": "reconcile",
             "display": "Created from DICOM attributes: reconcile with the patient index"}
DEFAULT_PATIENT_SYSTEM = "urn:hygeia:imaging:patient-id"
ENDPOINT_ID = "hygeia-dicomweb"
MATCH_LIMIT = 10
# BodyPartExamined (CS) -> SNOMED CT, for the common values (PS3.16 Annex L)
BODY_PARTS = {"HEAD": ("69536005", "Head"), "BRAIN": ("12738006", "Brain"),
              "CHEST": ("51185008", "Thorax"), "ABDOMEN": ("818981001", "Abdomen"),
              "PELVIS": ("12921003", "Pelvis"), "NECK": ("45048000", "Neck"),
              "HEART": ("80891009", "Heart"), "KNEE": ("72696002", "Knee"),
              "SHOULDER": ("16982005", "Shoulder"), "BREAST": ("76752008", "Breast"),
              "SPINE": ("421060004", "Spine"), "LSPINE": ("122496007", "Lumbar spine"),
              "CSPINE": ("122494005", "Cervical spine"), "HAND": ("85562004", "Hand"),
              "FOOT": ("56459004", "Foot"), "HIP": ("29836001", "Hip")}
LATERALITY = {"R": ("24028007", "Right"), "L": ("7771000", "Left")}


def uid_identifier(study_uid: str) -> str:
    return f"{DICOM_UID}|urn:oid:{study_uid}"


def find(session: Session, resource_type: str, params: list[tuple[str, str]]
         ) -> list[dict[str, Any]]:
    query = parse_query(resource_type, [*params, ("_count", str(MATCH_LIMIT))],
                        registry=session.registry)
    return [orjson.loads(match.content) for match in session.search(query).matches
            if match.content is not None]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace(
        "$", "\\$")


# ------------------------------------------------------------------ the patient


def ae_system(session: Session, source_ae: str) -> str | None:
    if not source_ae:
        return None
    row = as_sql(session).execute("SELECT patient_system FROM imaging_ae WHERE title = ?",
                                  (source_ae,)).fetchone()
    return None if row is None or not row[0] else str(row[0])


def patient_for(host: Host, session: Session, study: StudyRecord,
                default_system: str | None) -> str:
    """``Patient/id`` for the study's PatientID (module docstring)."""
    system = ae_system(session, study.source_ae) or default_system
    value = study.patient_id or \
        f"unknown-{hashlib.sha256(study.study_uid.encode()).hexdigest()[:16]}"
    if system:
        matches = find(session, "Patient",
                       [("identifier", f"{_escape(system)}|{_escape(value)}")])
    else:
        matches = find(session, "Patient", [("identifier", _escape(value))])
        if len(matches) > 1:
            system = DEFAULT_PATIENT_SYSTEM  # ambiguous: our own record of this PatientID
            matches = find(session, "Patient",
                           [("identifier", f"{DEFAULT_PATIENT_SYSTEM}|{_escape(value)}")])
    if len(matches) == 1:
        return f"Patient/{matches[0]['id']}"
    return _create_patient(host, session, study, system or DEFAULT_PATIENT_SYSTEM, value)


def _create_patient(host: Host, session: Session, study: StudyRecord, system: str,
                    value: str) -> str:
    patient: dict[str, Any] = {"resourceType": "Patient", "meta": {"tag": [RECONCILE]},
                               "identifier": [{"system": system, "value": value}]}
    name = human_name(study.patient_name)
    if name:
        patient["name"] = [name]
    birth = fhir_date(json_text(study.attrs, "PatientBirthDate"))
    if birth:
        patient["birthDate"] = birth
    gender = {"M": "male", "F": "female", "O": "other"}.get(
        json_text(study.attrs, "PatientSex").upper())
    if gender:
        patient["gender"] = gender
    criteria = f"identifier={_escape(system)}|{_escape(value)}"
    response = write.create(session, "Patient", patient, if_none_exist=criteria)
    created = orjson.loads(response.raw or b"{}")
    reference = f"Patient/{created['id']}"
    if response.status == 201:
        host.alerts.raise_alert(session, Alert(
            key=f"imaging-reconcile|{reference}", subject=reference,
            code={"coding": [RECONCILE]}, max_escalations=0,
            text=f"Images arrived for PatientID {value} ({system}), which no Patient "
                 f"carried: {reference} was created from the DICOM attributes; reconcile "
                 "it with the patient index.",
            source=f"ImagingStudy/{study.study_uid}"))
    return reference


def human_name(name: str) -> dict[str, Any] | None:
    """A DICOM PN (``Family^Given^Middle^Prefix^Suffix``) as a HumanName."""
    parts = (name.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (part.strip() for part in parts)
    result: dict[str, Any] = {}
    if family:
        result["family"] = family
    if given or middle:
        result["given"] = [part for part in (given, middle) if part]
    if prefix:
        result["prefix"] = [prefix]
    if suffix:
        result["suffix"] = [suffix]
    if result:
        result["text"] = " ".join(p for p in (prefix, given, middle, family, suffix) if p)
    return result or None


def fhir_date(value: str) -> str | None:
    """DICOM DA ``YYYYMMDD`` as a FHIR date (None when it is not one)."""
    value = value.strip().replace(".", "")
    if len(value) != 8 or not value.isdigit():
        return None
    return f"{value[:4]}-{value[4:6]}-{value[6:]}"


def fhir_datetime(date: str, time: str, offset: str) -> str | None:
    """DA + TM (+ TimezoneOffsetFromUTC ``+HHMM``) as a FHIR dateTime; without an offset
    only the date (FHIR requires a zone on a time of day)."""
    day = fhir_date(date)
    if day is None:
        return None
    time = time.strip().split(".")[0]
    offset = offset.strip()
    if len(time) < 4 or not time.isdigit() or len(offset) != 5 or offset[0] not in "+-":
        return day
    seconds = time[4:6] if len(time) >= 6 else "00"
    return f"{day}T{time[:2]}:{time[2:4]}:{seconds}{offset[:3]}:{offset[3:]}"


# ------------------------------------------------------------------ the endpoint


def ensure_endpoint(session: Session, base_url: str | None) -> str:
    """``Endpoint/hygeia-dicomweb``, written when missing or its address changed."""
    address = f"{(base_url or 'http://localhost').rstrip('/')}/dicomweb"
    current = session.current("Endpoint", ENDPOINT_ID)
    if current is not None and not current.deleted and current.content is not None and \
            orjson.loads(current.content).get("address") == address:
        return f"Endpoint/{ENDPOINT_ID}"
    write.update(session, "Endpoint", ENDPOINT_ID, {
        "resourceType": "Endpoint", "id": ENDPOINT_ID, "status": "active",
        "name": "Hygeia DICOMweb (WADO-RS, QIDO-RS, STOW-RS)",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/"
                                     "endpoint-connection-type", "code": "dicom-wado-rs"},
        "payloadType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                               "endpoint-payload-type",
                                     "code": "DICOM WADO-RS"}], "text": "DICOM"}],
        "payloadMimeType": ["application/dicom"], "address": address})
    return f"Endpoint/{ENDPOINT_ID}"


# ------------------------------------------------------------------ the study


def existing_id(session: Session, study_uid: str) -> str | None:
    """The id of the ImagingStudy that carries this Study Instance UID, if any."""
    matches = find(session, "ImagingStudy", [("identifier", uid_identifier(study_uid))])
    return str(matches[0]["id"]) if matches else None


def build_study(id: str, study: StudyRecord, series: list[SeriesRecord],
                instances: list[InstanceRecord], subject: str, endpoint: str,
                orders: list[str]) -> dict[str, Any]:
    """The ImagingStudy for the index's rows of one study."""
    attrs = study.attrs
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy", "id": id, "status": "available",
        "identifier": [{"use": "official", "system": DICOM_UID,
                        "value": f"urn:oid:{study.study_uid}"}],
        "subject": {"reference": subject},
        "endpoint": [{"reference": endpoint}],
        "numberOfSeries": len(series), "numberOfInstances": len(instances)}
    if study.accession:
        resource["identifier"].append({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                 "code": "ACSN"}]}, "value": study.accession})
    if study.modalities:
        resource["modality"] = [{"system": DCM, "code": m} for m in study.modalities]
    started = fhir_datetime(study.study_date, json_text(attrs, "StudyTime"),
                            json_text(attrs, "TimezoneOffsetFromUTC"))
    if started:
        resource["started"] = started
    if orders:
        resource["basedOn"] = [{"reference": order} for order in orders]
    description = json_text(attrs, "StudyDescription")
    if description:
        resource["description"] = description
    by_series: dict[str, list[InstanceRecord]] = {}
    for instance in instances:
        by_series.setdefault(instance.series_uid, []).append(instance)
    resource["series"] = [_series(one, by_series.get(one.series_uid, []), endpoint)
                          for one in series]
    return resource


def _series(series: SeriesRecord, instances: list[InstanceRecord], endpoint: str
            ) -> dict[str, Any]:
    result: dict[str, Any] = {
        "uid": series.series_uid,
        "modality": {"system": DCM, "code": series.modality or "OT"},
        "numberOfInstances": len(instances), "endpoint": [{"reference": endpoint}]}
    number = _unsigned(series.series_number)
    if number is not None:
        result["number"] = number
    description = series.text("SeriesDescription")
    if description:
        result["description"] = description
    body = series.text("BodyPartExamined").upper()
    if body:
        code, display = BODY_PARTS.get(body, (None, body.title()))
        result["bodySite"] = {"system": SNOMED, "code": code, "display": display} if code \
            else {"display": display}
    side = LATERALITY.get(series.text("Laterality").upper())
    if side:
        result["laterality"] = {"system": SNOMED, "code": side[0], "display": side[1]}
    started = fhir_datetime(series.text("SeriesDate"), series.text("SeriesTime"), "")
    if started:
        result["started"] = started
    result["instance"] = [_instance(one) for one in
                          sorted(instances, key=lambda i: (_unsigned(i.instance_number) or 0,
                                                           i.sop_uid))]
    return result


def _instance(instance: InstanceRecord) -> dict[str, Any]:
    result: dict[str, Any] = {"uid": instance.sop_uid,
                              "sopClass": {"system": "urn:ietf:rfc:3986",
                                           "code": f"urn:oid:{instance.sop_class}"}}
    number = _unsigned(instance.instance_number)
    if number is not None:
        result["number"] = number
    return result


def _unsigned(value: str) -> int | None:
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def orders_for(session: Session, accession: str) -> list[str]:
    """ServiceRequests whose identifier is the accession number."""
    if not accession:
        return []
    return [f"ServiceRequest/{found['id']}" for found in
            find(session, "ServiceRequest", [("identifier", _escape(accession))])]


def link_reports(session: Session, study_ref: str, accession: str, orders: list[str]) -> None:
    """Add the ImagingStudy to the DiagnosticReports of its orders (or accession)."""
    reports: dict[str, dict[str, Any]] = {}
    for order in orders:
        for report in find(session, "DiagnosticReport", [("based-on", order)]):
            reports[report["id"]] = report
    if accession:
        for report in find(session, "DiagnosticReport", [("identifier", _escape(accession))]):
            reports[report["id"]] = report
    for report in reports.values():
        studies = report.setdefault("imagingStudy", [])
        if any(ref.get("reference") == study_ref for ref in studies):
            continue
        studies.append({"reference": study_ref})
        write.update(session, "DiagnosticReport", report["id"], report)
