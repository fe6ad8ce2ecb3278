"""``Patient/{id}/$news2``: NEWS2 recomputed on demand (``hygeia clinical rescore`` too).

Both score the set of the patient's newest vital sign again, exactly as the engine
does when a vital sign is committed (a new version of that score when anything
changed, alerts by band), and answer the score Observation.
"""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.clinical.news2.engine import News2Engine
from hygeia.fhir.outcome import NotFound, Unprocessable
from hygeia.server import FhirResponse
from hygeia.server.extensions import Host, Operation, OperationCall
from hygeia.store import Session

DEFINITION = "urn:hygeia:OperationDefinition:Patient-news2"


def rescore(host: Host, session: Session, patient_id: str) -> dict[str, Any]:
    """The patient's NEWS2 score, recomputed; NotFound / Unprocessable saying why not."""
    patient = session.current("Patient", patient_id)
    if patient is None or patient.deleted:
        raise NotFound(f"Patient/{patient_id} is not known.", expression="id")
    id = News2Engine(host).rescore_patient(session, f"Patient/{patient_id}")
    if id is None:
        raise Unprocessable(f"No NEWS2 for Patient/{patient_id}: it has no vital signs, or "
                            "NEWS2 does not apply (under 16, or pregnant).",
                            expression="id")
    stored = session.current("Observation", id)
    assert stored is not None and stored.content is not None
    return dict(orjson.loads(stored.content))


def news2(call: OperationCall) -> FhirResponse:
    assert call.session is not None and call.id is not None
    return FhirResponse(200, resource=rescore(call.host, call.session, call.id))


def news2_operation() -> Operation:
    return Operation("news2", news2, DEFINITION, instances=frozenset({"Patient"}),
                     methods=("POST",), session="write", access="u",
                     documentation="Recompute the patient's NEWS2 from the newest vital "
                                   "signs (docs/guide/clinical.md).")
