"""``Patient/{id}/$news2`` and ``hygeia clinical rescore``: NEWS2 recomputed on demand.

Both score the set of the patient's newest vital sign again, exactly as the engine
does when a vital sign is committed (a new version of that score when anything
changed, alerts by band), and answer the score Observation.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from hygeia.clinical.news2.engine import News2Engine
from hygeia.fhir.outcome import FhirError, NotFound, Unprocessable
from hygeia.server import FhirResponse, FhirService
from hygeia.server.extensions import Host, Operation, OperationCall
from hygeia.store import DEFAULT_URL, Session, open_repository

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


class ClinicalCommand:
    """``hygeia clinical rescore --patient ID``."""

    name = "clinical"
    help = "clinical services: recompute a patient's NEWS2"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="clinical_action", metavar="ACTION",
                                        title="actions", required=True)
        again = actions.add_parser("rescore", help="recompute a patient's NEWS2 now",
                                   description="Recompute a patient's NEWS2 from the newest "
                                               "vital signs, as the engine does.")
        again.add_argument("--patient", required=True, metavar="ID", help="the Patient's id")
        again.add_argument("--db", default=DEFAULT_URL,
                           help=f"database URL (default {DEFAULT_URL})")

    def run(self, args: argparse.Namespace) -> int:
        try:
            with open_repository(args.db) as repository:
                service = FhirService(repository)
                with service.transaction() as session:
                    score = rescore(service, session, args.patient)
        except FhirError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        band = ((score.get("interpretation") or [{}])[0].get("coding") or [{}])[0]
        print(f"Patient/{args.patient}: NEWS2 {score['valueInteger']} "
              f"({band.get('code') or 'partial, no band'}) Observation/{score['id']}")
        return 0
