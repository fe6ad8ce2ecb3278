"""The analytics pillar as the CLI finds it: ``$viewdefinition-run`` and ``hygeia view``.

ViewDefinition itself is a resource type (:mod:`hygeia.analytics.view_type`,
declared in the ``hygeia.resource_types`` entry-point group), so it needs nothing
from here to be stored and searched.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.server.extensions import CliCommand, PillarHost


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= 86_400:
        raise argparse.ArgumentTypeError("must be between 0.1 and 86400 seconds")
    return value


class AnalyticsPillar:
    """SQL on FHIR v2 views over the store."""

    name = "analytics"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--no-view-refresh",
            action="store_true",
            help="do not refresh materialized views (tables and Parquet files) from the "
            "change feed",
        )
        group.add_argument(
            "--view-parquet-seconds",
            type=_seconds,
            default=5.0,
            metavar="S",
            help="rewrite a materialized view's Parquet file at most every S seconds while "
            "its table changes (default 5)",
        )

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        # imported here, not at the top: the CLI imports this module on every start
        from hygeia.analytics.operation import viewdefinition_run_operation
        from hygeia.analytics.refresh import ParquetRefresher, ViewRefresher

        host.add_operation(viewdefinition_run_operation())
        if not options.get("no_view_refresh"):
            parquet = ParquetRefresher(host.repository, interval=options.get(
                "view_parquet_seconds") or 5.0)
            host.add_listener(parquet)
            host.add_event_consumer(ViewRefresher(host, parquet))

    def commands(self) -> Sequence[CliCommand]:
        from hygeia.analytics.commands import SqlCommand, ViewCommand

        return [ViewCommand(), SqlCommand()]

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        return []


PILLAR = AnalyticsPillar()
