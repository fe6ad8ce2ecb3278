"""The analytics pillar as the CLI finds it: ``$viewdefinition-run`` and ``hygeia view``.

ViewDefinition itself is a resource type (:mod:`hygeia.analytics.view_type`,
declared in the ``hygeia.resource_types`` entry-point group), so it needs nothing
from here to be stored and searched.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.analytics.operation import viewdefinition_run_operation
from hygeia.analytics.refresh import ViewRefresher
from hygeia.server.extensions import CliCommand, PillarHost


class AnalyticsPillar:
    """SQL on FHIR v2 views over the store."""

    name = "analytics"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--no-view-refresh",
            action="store_true",
            help="do not refresh materialized views from the change feed",
        )

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        host.add_operation(viewdefinition_run_operation())
        if not options.get("no_view_refresh"):
            host.add_event_consumer(ViewRefresher(host))

    def commands(self) -> Sequence[CliCommand]:
        from hygeia.analytics.commands import SqlCommand, ViewCommand

        return [ViewCommand(), SqlCommand()]

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        return []


PILLAR = AnalyticsPillar()
