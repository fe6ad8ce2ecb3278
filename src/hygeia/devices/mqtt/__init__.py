"""TODO(issue 16): the mqtt part of the devices pillar (being built)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.server.extensions import CliCommand, PillarHost


def serve_options(group: argparse._ArgumentGroup) -> None:
    """Add this part's ``hygeia serve`` flags."""


def install(host: PillarHost, options: Mapping[str, Any]) -> None:
    """Register this part's listeners on ``host`` when its flags ask for them."""


def commands() -> Sequence[CliCommand]:
    return []


def demo(host: PillarHost, fhir_base: str) -> list[str]:
    return []
