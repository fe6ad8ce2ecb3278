"""The clinical pillar as the CLI finds it: its serve flags, start-up, commands and demo.

The parts are the NEWS2 early-warning engine (an event consumer of the change
feed, ``news2``) and the CDS Hooks 2.0 services (a mount at ``/cds-services``,
``cds``); this module only gathers them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.server.extensions import CliCommand, PillarHost


class ClinicalPillar:
    """CDS Hooks services and the early-warning engine."""

    name = "clinical"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        return None

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        return None

    def commands(self) -> Sequence[CliCommand]:
        return []

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        return []


PILLAR = ClinicalPillar()
