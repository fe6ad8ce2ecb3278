"""ADT messages keep Patient, Encounter and Location current.

=========  =====================================================================
A01, A04   admit / register: the patient (found by a ``PID-3`` identifier, else
           created), the visit (``PV1-19``) as an Encounter in progress, and
           the patient's bed (``PV1-3``) from the admission time
A02        transfer: the current bed's stay ends and the new bed's begins at the
           event time
A03        discharge: the Encounter is finished, its bed stay ends
A08        update: demographics, and the visit's class, period and bed when given
=========  =====================================================================

Matching is by identifier only, never by name: a ``PID-3`` repetition is an
Identifier whose system is the assigning authority (``CX-4``: ``urn:oid:`` +
its universal id when that is an ISO OID, the URI itself for a URI, else
``urn:hygeia:hl7v2:assigner:`` + its namespace; with no authority, the
assigning facility ``CX-6``, else the sending facility ``MSH-4``). Two
identifiers of one message that belong to two different patients are refused
(AE, ERR 205): merging is a person's decision.

A point of care ``PV1-3`` (``point of care^room^bed^facility``) is a
Location with the identifier ``urn:hygeia:hl7v2:location`` |
``FACILITY/POC/ROOM/BED`` (:func:`location_value`, empty parts left empty);
a bed is ``physicalType`` bd and ``partOf`` its room (ro), a room of its
ward (wa). Each bed the patient lies in is an ``Encounter.location`` entry
with its period, which is how :func:`patient_in_bed` attributes device data
from a bed to the patient in it at that time.

Times: ``EVN-6`` (event occurred), else ``EVN-2`` (recorded), else ``MSH-7``;
``PV1-44``/``PV1-45`` for admission and discharge when given. A time without
a UTC offset is taken as UTC.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import hl7
import orjson

from hygeia.devices.hl7v2.handling import (
    Handled,
    Handler,
    Received,
    Rejected,
    field_text,
    first_segment,
    repetitions,
)
from hygeia.devices.hl7v2.identity import system_of_authority
from hygeia.fhir.search.query import parse_query
from hygeia.server.rest import write

if TYPE_CHECKING:
    from hygeia.store import Session

LOCATION_SYSTEM = "urn:hygeia:hl7v2:location"
IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODES = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATIENT_CLASSES = "http://terminology.hl7.org/CodeSystem/v2-0004"
PHYSICAL_TYPES = "http://terminology.hl7.org/CodeSystem/location-physical-type"
# PV1-2 patient class (table 0004) -> Encounter.class (v3 ActCode)
ENCOUNTER_CLASSES = {"E": "EMER", "I": "IMP", "O": "AMB", "P": "PRENC", "R": "AMB",
                     "B": "IMP", "C": "AMB"}
GENDERS = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown",
           "N": "unknown"}
_DTM = re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?")
SEARCH_LIMIT = 1000  # encounters that held one bed looked at by patient_in_bed


# ------------------------------------------------------------------ the handlers


def admit(received: Received, session: Session) -> Handled:
    """A01 admit, A04 register: the visit is in progress, in the bed of PV1-3."""
    return _apply(received, session, "admit")


def transfer(received: Received, session: Session) -> Handled:
    """A02: the patient moves to PV1-3 at the event time."""
    return _apply(received, session, "transfer")


def discharge(received: Received, session: Session) -> Handled:
    """A03: the visit is finished; its bed stay ends at the discharge time."""
    return _apply(received, session, "discharge")


def update(received: Received, session: Session) -> Handled:
    """A08: demographics and visit details change; a new bed counts as a move."""
    return _apply(received, session, "update")


HANDLES: dict[str, Handler] = {"ADT^A01": admit, "ADT^A04": admit, "ADT^A02": transfer,
                               "ADT^A03": discharge, "ADT^A08": update}


def _apply(received: Received, session: Session, event: str) -> Handled:
    message = received.message
    pid = first_segment(message, "PID")
    if pid is None:
        raise Rejected("The message has no PID segment.", hl7_code="100", location="PID")
    pv1 = first_segment(message, "PV1")
    handled = Handled()
    patient = upsert_patient(session, message, pid, handled)
    if pv1 is None:
        if event == "update":
            return handled
        raise Rejected("The message has no PV1 segment.", hl7_code="100", location="PV1")
    _upsert_encounter(session, message, pv1, patient, event, _event_time(received), handled)
    return handled


# ------------------------------------------------------------------ patients


def identifier_system(namespace: str, universal_id: str, universal_type: str) -> str:
    """Identifier.system for an HL7 assigning authority (HD): module docstring."""
    if universal_id and universal_type.upper() == "ISO":
        return f"urn:oid:{universal_id}"
    if universal_id and universal_type.upper() in ("URI", "URL"):
        return universal_id
    if not (namespace or universal_id):
        return ""  # no authority here: the caller falls back to the facility
    return system_of_authority(namespace, universal_id, universal_type, "")


def identifiers(message: hl7.Message, segment: hl7.Segment, field: int) -> list[dict[str, Any]]:
    """The CX repetitions of ``segment``'s ``field`` as FHIR Identifiers (PID-3, PV1-19)."""
    found = []
    for repetition in range(1, repetitions(segment, field) + 1):
        value = field_text(segment, field, repetition, 1)
        if not value:
            continue
        system = identifier_system(*(field_text(segment, field, repetition, 4, part)
                                     for part in (1, 2, 3))) or \
            identifier_system(field_text(segment, field, repetition, 6, 1), "", "") or \
            identifier_system(*(field_text(message.segment("MSH"), 4, 1, part)
                                for part in (1, 2, 3)))
        identifier: dict[str, Any] = {"system": system, "value": value} if system else \
            {"value": value}
        kind = field_text(segment, field, repetition, 5)
        if kind:
            identifier["type"] = {"coding": [{"system": IDENTIFIER_TYPES, "code": kind}]}
        found.append(identifier)
    return found


def upsert_patient(session: Session, message: hl7.Message, pid: hl7.Segment,
                   handled: Handled) -> str:
    """The Patient of ``pid`` (``Patient/id``), found by a PID-3 identifier or created,
    with its demographics brought up to date."""
    wanted = identifiers(message, pid, 3)
    if not wanted:
        raise Rejected("PID-3 (patient identifier list) holds no identifier.",
                       hl7_code="101", location="PID^1^3")
    found = find_by_identifiers(session, "Patient", wanted)
    if len(found) > 1:
        raise Rejected("The identifiers of PID-3 belong to different patients ("
                       + ", ".join(f"Patient/{id}" for id in sorted(found))
                       + "); merge them before sending this message.",
                       hl7_code="205", location="PID^1^3")
    existing = _current(session, "Patient", next(iter(found))) if found else None
    patient = dict(existing or {"resourceType": "Patient"})
    patient["identifier"] = _merged(patient.get("identifier", []), wanted)
    patient.update(_demographics(pid))
    return _save(session, "Patient", existing, patient, handled)


def find_by_identifiers(session: Session, resource_type: str,
                        wanted: list[dict[str, Any]]) -> set[str]:
    """Ids of current ``resource_type`` resources holding any of ``wanted``, after taking
    a lock on each (so two messages about one new patient create it once)."""
    tokens = sorted({_token(identifier) for identifier in wanted})
    for token in tokens:
        session.lock(f"{resource_type}?identifier={token}")
    found: set[str] = set()
    for token in tokens:
        query = parse_query(resource_type, [("identifier", token)], registry=session.registry)
        found.update(session.find_ids(query))
    return found


def _token(identifier: dict[str, Any]) -> str:
    value = identifier["value"].replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
    system = identifier.get("system")
    return f"{system}|{value}" if system else value


def _merged(have: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = {(item.get("system"), item.get("value")) for item in have}
    return [*have, *(item for item in new if (item.get("system"), item.get("value"))
                     not in keys)]


def _demographics(pid: hl7.Segment) -> dict[str, Any]:
    """What PID says of the person (only what it values: an empty field erases nothing)."""
    found: dict[str, Any] = {}
    family, given = field_text(pid, 5, 1, 1), field_text(pid, 5, 1, 2)
    middle = field_text(pid, 5, 1, 3)
    if family or given:
        name: dict[str, Any] = {"use": "official"}
        if family:
            name["family"] = family
        if given or middle:
            name["given"] = [part for part in (given, middle) if part]
        found["name"] = [name]
    birth = field_text(pid, 7)
    if birth:
        found["birthDate"] = _date(birth, "PID^1^7")
    sex = field_text(pid, 8).upper()
    if sex in GENDERS:
        found["gender"] = GENDERS[sex]
    address = _address(pid)
    if address:
        found["address"] = [address]
    phone = field_text(pid, 13, 1, 1) or field_text(pid, 13, 1, 12) or \
        " ".join(part for part in (field_text(pid, 13, 1, 6), field_text(pid, 13, 1, 7)) if part)
    if phone:
        found["telecom"] = [{"system": "phone", "value": phone, "use": "home"}]
    death = field_text(pid, 29)
    if death:
        found["deceasedDateTime"] = _datetime_text(death, "PID^1^29")
    elif field_text(pid, 30).upper() == "Y":
        found["deceasedBoolean"] = True
    return found


def _address(pid: hl7.Segment) -> dict[str, Any]:
    street, other, city, state, postal, country = (field_text(pid, 11, 1, part)
                                                   for part in range(1, 7))
    address: dict[str, Any] = {}
    lines = [line for line in (street, other) if line]
    if lines:
        address["line"] = lines
    for key, value in (("city", city), ("state", state), ("postalCode", postal),
                       ("country", country)):
        if value:
            address[key] = value
    return address


# ------------------------------------------------------------------ encounters


def _upsert_encounter(session: Session, message: hl7.Message, pv1: hl7.Segment, patient: str,
                      event: str, when: str, handled: Handled) -> None:
    visit = identifiers(message, pv1, 19)[:1]
    if not visit:
        if event == "update":
            return
        raise Rejected("PV1-19 (visit number) is empty: the visit cannot be told apart "
                       "from the patient's others.", hl7_code="101", location="PV1^1^19")
    visit[0].setdefault("type", {"coding": [{"system": IDENTIFIER_TYPES, "code": "VN"}]})
    found = find_by_identifiers(session, "Encounter", visit)
    existing = _current(session, "Encounter", next(iter(found))) if found else None
    if existing is not None and existing.get("subject", {}).get("reference") != patient:
        raise Rejected(f"Visit {visit[0]['value']} (PV1-19) belongs to "
                       f"{existing.get('subject', {}).get('reference')}, not to {patient}.",
                       hl7_code="205", location="PV1^1^19")
    encounter = dict(existing or {"resourceType": "Encounter", "status": "in-progress",
                                  "subject": {"reference": patient}})
    encounter["identifier"] = _merged(encounter.get("identifier", []), visit)
    _set_class(encounter, field_text(pv1, 2).upper())
    _set_period_and_status(encounter, pv1, event, when)
    location = location_from_pv1(session, pv1, handled)
    _move(encounter, location, event, when, encounter["period"])
    _save(session, "Encounter", existing, encounter, handled)


def _set_class(encounter: dict[str, Any], patient_class: str) -> None:
    if patient_class in ENCOUNTER_CLASSES:
        encounter["class"] = {"system": ACT_CODES, "code": ENCOUNTER_CLASSES[patient_class]}
        encounter["type"] = [{"coding": [{"system": PATIENT_CLASSES, "code": patient_class}]}]
    elif "class" not in encounter:
        encounter["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                              "code": "UNK"}


def _set_period_and_status(encounter: dict[str, Any], pv1: hl7.Segment, event: str,
                           when: str) -> None:
    period = dict(encounter.get("period", {}))
    admitted, left = field_text(pv1, 44), field_text(pv1, 45)
    if admitted:
        period["start"] = _datetime_text(admitted, "PV1^1^44")
    elif "start" not in period:
        period["start"] = when
    if left or event == "discharge":
        period["end"] = _datetime_text(left, "PV1^1^45") if left else when
        encounter["status"] = "finished"
    elif event in ("admit", "transfer"):
        encounter["status"] = "in-progress"
        period.pop("end", None)
    encounter["period"] = period


def _move(encounter: dict[str, Any], location: str | None, event: str, when: str,
          period: dict[str, Any]) -> None:
    """Close the active bed stay and open one in ``location`` as the event says."""
    stays = [dict(stay) for stay in encounter.get("location", [])]
    active = next((stay for stay in stays if stay.get("status") == "active"), None)
    if encounter["status"] == "finished":
        for stay in stays:
            if stay.get("status") == "active":
                stay["status"] = "completed"
                stay["period"] = {**stay.get("period", {}), "end": period["end"]}
        if location is not None and not any(stay["location"]["reference"] == location
                                            for stay in stays):  # discharged, never admitted
            stays.append({"location": {"reference": location}, "status": "completed",
                          "period": {"start": period["start"], "end": period["end"]}})
    elif location is not None and (active is None or
                                   active["location"]["reference"] != location):
        start = period["start"] if event == "admit" and active is None else when
        if active is not None:
            active["status"] = "completed"
            active["period"] = {**active.get("period", {}), "end": when}
        stays.append({"location": {"reference": location}, "status": "active",
                      "period": {"start": start}})
    elif location is None and event == "transfer":
        raise Rejected("PV1-3 (assigned patient location) is empty in a transfer.",
                       hl7_code="101", location="PV1^1^3")
    if stays:
        encounter["location"] = stays


# ------------------------------------------------------------------ locations


def location_value(point_of_care: str, room: str, bed: str, facility: str) -> str:
    """The identifier value of a point of care: ``FACILITY/POC/ROOM/BED``, empty parts
    left empty (``location_value("ICU", "", "3", "HOSP")`` is ``HOSP/ICU//3``)."""
    return "/".join((facility, point_of_care, room, bed))


def pv1_location_value(pv1: hl7.Segment) -> str | None:
    """:func:`location_value` of PV1-3, or None when it names no point of care."""
    poc, room, bed = (field_text(pv1, 3, 1, part) for part in (1, 2, 3))
    if not (poc or room or bed):
        return None
    return location_value(poc, room, bed, field_text(pv1, 3, 1, 4))


def location_from_pv1(session: Session, pv1: hl7.Segment, handled: Handled) -> str | None:
    """The Location of PV1-3 (``Location/id``), created with its ward and room when
    new; None when PV1-3 is empty."""
    poc, room, bed = (field_text(pv1, 3, 1, part) for part in (1, 2, 3))
    facility, description = field_text(pv1, 3, 1, 4), field_text(pv1, 3, 1, 9)
    levels = [(kind, value) for kind, value in
              (("wa", location_value(poc, "", "", facility) if poc else ""),
               ("ro", location_value(poc, room, "", facility) if room else ""),
               ("bd", location_value(poc, room, bed, facility) if bed else "")) if value]
    reference = None
    for index, (kind, value) in enumerate(levels):
        last = index == len(levels) - 1
        reference = _location(session, kind, value, reference,
                              description if last and description else None, handled)
    return reference


def _location(session: Session, kind: str, value: str, part_of: str | None,
              name: str | None, handled: Handled) -> str:
    identifier = {"system": LOCATION_SYSTEM, "value": value}
    found = find_by_identifiers(session, "Location", [identifier])
    if found:
        return f"Location/{min(found)}"
    location: dict[str, Any] = {
        "resourceType": "Location", "identifier": [identifier], "status": "active",
        "name": name or " ".join(part for part in value.split("/") if part),
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL_TYPES, "code": kind}]}}
    if part_of is not None:
        location["partOf"] = {"reference": part_of}
    return _save(session, "Location", None, location, handled)


# ------------------------------------------------------------------ who is in a bed


def patient_in_bed(session: Session, location_value: str, at: datetime) -> str | None:
    """The Patient (``Patient/id``) whose Encounter had the bed ``location_value``
    (:func:`location_value`: ``HOSP/ICU/101/A``) at ``at``, found by FHIR search; None
    when no one or more than one patient did (data is never attributed by a guess).
    A naive ``at`` is taken as UTC."""
    moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    beds = find_ids(session, "Location", [("identifier", f"{LOCATION_SYSTEM}|"
                                           f"{_escape_token(location_value)}")])
    if len(beds) != 1:
        return None
    bed = f"Location/{beds[0]}"
    patients = set()
    when = moment.isoformat()
    # the date filters narrow the search to encounters with a stay around that moment
    # (maybe in another bed: the loop below checks the stay in this bed)
    for encounter in search(session, "Encounter", [("location", bed),
                                                   ("location-period", f"le{when}"),
                                                   ("location-period", f"ge{when}")]):
        for stay in encounter.get("location", []):
            if stay.get("location", {}).get("reference") == bed and \
                    _within(stay.get("period", {}), moment):
                patients.add(encounter.get("subject", {}).get("reference"))
    patients.discard(None)
    return patients.pop() if len(patients) == 1 else None


def _within(period: dict[str, Any], moment: datetime) -> bool:
    start, end = period.get("start"), period.get("end")
    if not start or _instant(start) > moment:
        return False
    return not end or moment < _instant(end)


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _escape_token(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")


def find_ids(session: Session, resource_type: str, params: list[tuple[str, str]]) -> list[str]:
    query = parse_query(resource_type, params, registry=session.registry)
    return session.find_ids(query)


def search(session: Session, resource_type: str, params: list[tuple[str, str]]
           ) -> list[dict[str, Any]]:
    """Current resources matching ``params`` (at most :data:`SEARCH_LIMIT`)."""
    query = parse_query(resource_type, [*params, ("_count", str(SEARCH_LIMIT))],
                        max_count=SEARCH_LIMIT, registry=session.registry)
    return [orjson.loads(match.content) for match in session.search(query).matches
            if match.content is not None]


# ------------------------------------------------------------------ shared steps


def _current(session: Session, resource_type: str, id: str) -> dict[str, Any] | None:
    stored = session.current(resource_type, id)
    if stored is None or stored.deleted or stored.content is None:
        return None
    resource: dict[str, Any] = orjson.loads(stored.content)
    return resource


def _save(session: Session, resource_type: str, existing: dict[str, Any] | None,
          resource: dict[str, Any], handled: Handled) -> str:
    """Write ``resource`` (a new version only when it changed); its reference, which
    joins ``handled.written``."""
    if existing is None:
        created = write.create(session, resource_type, resource)
        assert created.location is not None
        reference = "/".join(created.location.split("/")[-4:-2])
    else:
        reference = f"{resource_type}/{existing['id']}"
        if _without_meta(existing) != _without_meta(resource):
            write.update(session, resource_type, existing["id"], resource)
    handled.written.append(reference)
    return reference


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != "meta"}


def _event_time(received: Received) -> str:
    message = received.message
    evn = first_segment(message, "EVN")
    for segment, field, where in ((evn, 6, "EVN^1^6"), (evn, 2, "EVN^1^2"),
                                  (message.segment("MSH"), 7, "MSH^1^7")):
        text = field_text(segment, field) if segment is not None else ""
        if text:
            return _datetime_text(text, where)
    return received.received_at.astimezone(UTC).isoformat()


def _parsed(text: str, where: str) -> datetime:
    value = None
    if _DTM.fullmatch(text):  # python-hl7 reads "2024-03-01" as 2024-01-01: check first
        with contextlib.suppress(ValueError):
            value = hl7.parse_datetime(text)
    if value is None:
        raise Rejected(f"{where.replace('^1^', '-')} is not an HL7 date/time: {text!r}.",
                       hl7_code="102", location=where)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _datetime_text(text: str, where: str) -> str:
    """A FHIR dateTime for an HL7 DTM (to the second, with its offset)."""
    return _parsed(text, where).isoformat(timespec="seconds")


def _date(text: str, where: str) -> str:
    """A FHIR date for an HL7 DT/DTM, at the precision given (``1980``, ``198006``...)."""
    day = _parsed(text[:8], where).date().isoformat()
    return day[:{4: 4, 6: 7}.get(len(text), 10)]
