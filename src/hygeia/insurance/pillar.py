"""The insurance pillar as the CLI finds it: its operations and the ``insurance`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.fhir.outcome import FhirError
from hygeia.server.extensions import CliCommand, PillarHost
from hygeia.store import DEFAULT_URL, open_repository

# The CLI imports this module on every start to build its parser: adjudication and the
# server are imported where they are used (InsuranceCommand.run, InsurancePillar.install).


class InsuranceCommand:
    """``hygeia insurance demo --db URL``: the demo payer, plan and fee schedule."""

    name = "insurance"
    help = "insurance: install the demo payer and plan"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="insurance_action", metavar="ACTION",
                                        title="actions", required=True)
        demo = actions.add_parser("demo", help="install the demo payer, plan and fee schedule",
                                  description="Install (or refresh) the demo payer "
                                              "Organization, the DEMO-PPO InsurancePlan and "
                                              "its fee schedule.")
        demo.add_argument("--db", default=DEFAULT_URL,
                          help=f"database URL (default {DEFAULT_URL})")
        review = actions.add_parser("review", help="decide a pended claim or preauthorization",
                                    description="Approve or deny a pended claim or "
                                                "preauthorization: its ClaimResponse is "
                                                "settled again and its review Task completed.")
        review.add_argument("--claim", required=True, metavar="ID", help="the Claim's id")
        review.add_argument("--decision", required=True, choices=("approve", "deny"),
                            help="approve or deny the pended claim (required; no default)")
        review.add_argument("--db", default=DEFAULT_URL,
                            help=f"database URL (default {DEFAULT_URL})")

    def run(self, args: argparse.Namespace) -> int:
        from hygeia.insurance.plan import demo_resources
        from hygeia.insurance.settlement import review
        from hygeia.server import FhirService
        from hygeia.server.rest import write

        try:
            with open_repository(args.db) as repository:
                service = FhirService(repository)
                with service.transaction() as session:
                    if args.insurance_action == "review":
                        response = review(session, f"Claim/{args.claim}", args.decision)
                    else:
                        for resource in demo_resources():
                            write.update(session, resource["resourceType"], resource["id"],
                                         resource)
        except FhirError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if args.insurance_action == "review":
            print(f"Claim/{args.claim}: {response['outcome']} "
                  f"(ClaimResponse/{response['id']})"
                  + (f", preAuthRef {response['preAuthRef']}" if "preAuthRef" in response
                     else ""))
            return 0
        print("installed Organization/demo-payer (urn:hygeia:payer|DEMO), "
              "InsurancePlan/demo-ppo (urn:hygeia:plan|DEMO-PPO) and its fee schedule")
        return 0


class InsurancePillar:
    """Claim adjudication and eligibility."""

    name = "insurance"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        return None

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        from hygeia.insurance.operations import operations
        from hygeia.insurance.plan import PlanEdits
        from hygeia.insurance.settlement import CancelTasks, ClaimVoids

        host.add_write_hook(ClaimVoids())
        host.add_write_hook(CancelTasks())
        host.add_write_hook(PlanEdits())
        for operation in operations():
            host.add_operation(operation)

    def commands(self) -> Sequence[CliCommand]:
        return [InsuranceCommand()]

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        return ["Insurance pillar (docs/guide/insurance.md): hygeia insurance demo --db URL"]


PILLAR = InsurancePillar()
