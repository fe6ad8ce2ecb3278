"""A service with alert settings for tests, a patient with a care team, and readers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from hygeia.fhir.search.query import parse_query
from hygeia.server import AlertSettings, FhirService, Settings
from hygeia.server.alerts import ESCALATION_ROLE, TASK_CODES, Alert
from hygeia.server.rest import write
from hygeia.store import Repository

ALERTS = AlertSettings(escalate_after_seconds=300.0, max_escalations=2, scan_seconds=0.2,
                       fallback_recipient="Organization/ward-7",
                       escalation_recipient="PractitionerRole/on-call")


def make_service(repository: Repository, **changes: Any) -> FhirService:
    settings = AlertSettings(**{**{field: getattr(ALERTS, field)
                                  for field in AlertSettings.__dataclass_fields__}, **changes})
    return FhirService(repository, Settings(alerts=settings))


@pytest.fixture
def alerting(repository: Repository) -> Iterator[FhirService]:
    service = make_service(repository)
    try:
        yield service
    finally:
        service.close()


def store(service: FhirService, *resources: dict[str, Any]) -> None:
    with service.transaction() as session:
        for resource in resources:
            write.update(session, resource["resourceType"], resource["id"], resource)


def care_team(id: str, patient: str, *members: str, escalation: tuple[str, ...] = (),
              **elements: Any) -> dict[str, Any]:
    role = [{"coding": [{"system": TASK_CODES, "code": ESCALATION_ROLE}]}]
    participants = [{"member": {"reference": member}} for member in members] + \
        [{"member": {"reference": member}, "role": role} for member in escalation]
    return {"resourceType": "CareTeam", "id": id, "status": "active",
            "subject": {"reference": f"Patient/{patient}"}, "participant": participants,
            **elements}


def patient(id: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id}


def alarm(patient_id: str, key: str = "", **changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "key": key or f"spo2-low|Patient/{patient_id}", "subject": f"Patient/{patient_id}",
        "code": {"coding": [{"system": "urn:example", "code": "spo2-low"}]},
        "text": "SpO2 below the monitor's limit.", "priority": "urgent",
        "source": "Device/monitor-1"}
    return Alert(**{**fields, **changes})


def found(service: FhirService, resource_type: str, *params: tuple[str, str]
          ) -> list[dict[str, Any]]:
    with service.reader() as session:
        query = parse_query(resource_type, [*params, ("_count", "100")],
                            registry=session.registry)
        return [orjson.loads(stored.content or b"{}")
                for stored in session.search(query).matches]


def read(service: FhirService, resource_type: str, id: str) -> dict[str, Any]:
    with service.reader() as session:
        stored = session.current(resource_type, id)
    assert stored is not None and stored.content is not None
    return dict(orjson.loads(stored.content))
