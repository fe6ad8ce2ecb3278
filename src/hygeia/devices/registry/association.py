"""Which patient a device measures, over time: DeviceUseStatement.

A device moves between patients (a monitor is wheeled to the next bed, a home
scale is lent to another patient), so the association is a period, not a
field of the Device: one DeviceUseStatement per patient and period
(``timingPeriod``). :func:`associate` closes the device's open association
when it starts a new one, so at any moment a device has at most one patient;
:func:`patient_of` answers "whose reading is this" for a moment in time.
"""

from __future__ import annotations

from dataclasses import dataclass

from hygeia.devices.registry.devices import content_of
from hygeia.fhir.datetime import fhir_datetime_range, format_instant, now_us
from hygeia.fhir.outcome import BadRequest, NotFound
from hygeia.fhir.search.query import parse_query
from hygeia.server.rest import write
from hygeia.store import Session, StoredVersion

# associations of one device read to answer patient_of (a device lent a thousand times
# is answered from its newest thousand)
MAX_ASSOCIATIONS = 1000
# DeviceUseStatement.status values that mean "the device was used on the patient"
IN_USE = ("active", "completed")


@dataclass(frozen=True, slots=True)
class Association:
    """One DeviceUseStatement as the registry reads it."""

    id: str
    patient: str  # "Patient/123"
    start: int  # microseconds
    end: int | None  # None: still in use

    def covers(self, moment: int) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


def associate(session: Session, device_id: str, patient_id: str, *,
              start: str | None = None, end: str | None = None) -> str:
    """Record that ``Device/device_id`` measures ``Patient/patient_id`` from ``start``
    (a FHIR dateTime; default now) until ``end`` (default: until further notice).

    The device's association still open at ``start`` is ended there. Returns the
    new DeviceUseStatement's id.
    """
    for resource_type, id in (("Device", device_id), ("Patient", patient_id)):
        current = session.current(resource_type, id)
        if current is None or current.deleted:
            raise NotFound(f"{resource_type}/{id} does not exist.", expression=resource_type)
    start = start or format_instant(now_us())
    begins = fhir_datetime_range(start, name="start")[0]
    if end is not None and fhir_datetime_range(end, name="end")[0] <= begins:
        raise BadRequest(f"The association ends ({end}) before it starts ({start}).",
                         expression="DeviceUseStatement.timingPeriod")
    _end_open(session, device_id, start, begins)
    period = {"start": start} | ({"end": end} if end else {})
    statement = {"resourceType": "DeviceUseStatement",
                 "status": "completed" if end else "active",
                 "subject": {"reference": f"Patient/{patient_id}"},
                 "device": {"reference": f"Device/{device_id}"},
                 "timingPeriod": period, "recordedOn": format_instant(now_us())}
    response = write.create(session, "DeviceUseStatement", statement)
    assert response.location is not None
    return response.location.split("/")[1]


def _end_open(session: Session, device_id: str, start: str, begins: int) -> None:
    for version in _statements(session, device_id):
        association = _association(version)
        if association is None or association.end is not None or association.start > begins:
            continue
        statement = content_of(version)
        statement["status"] = "completed"
        statement["timingPeriod"] = {**statement.get("timingPeriod", {}), "end": start}
        write.update(session, "DeviceUseStatement", version.id, statement)


def associations(session: Session, device_id: str) -> list[Association]:
    """The device's associations in use (active or completed), newest start first."""
    found = [a for a in map(_association, _statements(session, device_id)) if a is not None]
    return sorted(found, key=lambda a: a.start, reverse=True)


def patient_of(session: Session, device_id: str, moment: int | None = None) -> str | None:
    """``Patient/id`` that ``Device/device_id`` measured at ``moment`` (microseconds;
    default now), or None when no association covers it."""
    moment = now_us() if moment is None else moment
    return next((a.patient for a in associations(session, device_id) if a.covers(moment)),
                None)


def _statements(session: Session, device_id: str) -> list[StoredVersion]:
    query = parse_query("DeviceUseStatement", [("device", f"Device/{device_id}")],
                        registry=session.registry, max_count=MAX_ASSOCIATIONS)
    query.count = MAX_ASSOCIATIONS
    return session.search(query).matches


def _association(version: StoredVersion) -> Association | None:
    statement = content_of(version)
    subject = statement.get("subject", {}).get("reference", "")
    period = statement.get("timingPeriod") or {}
    if statement.get("status") not in IN_USE or not subject.startswith("Patient/") or \
            not isinstance(period.get("start"), str):
        return None
    try:
        start = fhir_datetime_range(period["start"])[0]
        end = fhir_datetime_range(period["end"])[0] if isinstance(period.get("end"), str) \
            else None
    except BadRequest:
        return None
    return Association(version.id, subject, start, end)
