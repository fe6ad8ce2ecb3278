"""The clinical pillar as the CLI finds it: its serve flags, start-up, commands and demo.

The parts are the NEWS2 early-warning engine (an event consumer of the change
feed, :mod:`hygeia.clinical.news2`) and the CDS Hooks 2.0 services (a mount at
``/cds-services``, :mod:`hygeia.clinical.cds`); this module only gathers them.
The CLI imports it on every invocation to build its parser, so the parts are
imported when the pillar is installed in a serving process, not here.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.clinical.cds.commands import CdsCommand
from hygeia.clinical.commands import ClinicalCommand
from hygeia.clinical.settings import DUPLICATE_ORDER_DAYS, SET_SECONDS, WINDOW_SECONDS
from hygeia.server.extensions import CliCommand, PillarHost


class ClinicalPillar:
    """CDS Hooks services and the early-warning engine."""

    name = "clinical"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--news2-window-minutes", type=float,
                           default=WINDOW_SECONDS / 60, metavar="M",
                           help="NEWS2 takes the latest reading of each parameter within "
                                f"M minutes before the set (default {WINDOW_SECONDS / 60:g})")
        group.add_argument("--duplicate-order-days", type=float,
                           default=DUPLICATE_ORDER_DAYS, metavar="D",
                           help="the duplicate-order CDS service looks back D days "
                                f"(default {DUPLICATE_ORDER_DAYS:g})")
        group.add_argument("--no-news2", action="store_true",
                           help="do not run the NEWS2 early-warning engine")

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        from hygeia.clinical.cds.mount import CdsMount
        from hygeia.clinical.cds.services import built_in
        from hygeia.clinical.news2.engine import News2Engine
        from hygeia.clinical.news2.operation import news2_operation

        minutes = float(options.get("news2_window_minutes") or WINDOW_SECONDS / 60)
        days = float(options.get("duplicate_order_days") or DUPLICATE_ORDER_DAYS)
        host.add_mount(CdsMount(host, built_in(minutes * 60, days)))
        host.add_operation(news2_operation())
        if not options.get("no_news2"):
            host.add_event_consumer(News2Engine(host, window_seconds=minutes * 60,
                                                set_seconds=SET_SECONDS))

    def commands(self) -> Sequence[CliCommand]:
        return [ClinicalCommand(), CdsCommand()]

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        from hygeia.clinical.demo import demo_lines

        return demo_lines(host, fhir_base)


PILLAR = ClinicalPillar()
