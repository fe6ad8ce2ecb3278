"""``hygeia clinical rescore --patient ID``: a patient's NEWS2 recomputed now.

The CLI builds this command's parser on every ``hygeia`` invocation, so the module
imports the engine and the server only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from hygeia.fhir.outcome import FhirError
from hygeia.store import DEFAULT_URL, open_repository


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
        from hygeia.clinical.news2.operation import rescore
        from hygeia.server import FhirService

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
