"""The devices pillar as the CLI finds it: its serve flags, start-up, commands and demo.

Each protocol is a subpackage with the same three entry points (``install``,
``commands``, ``demo``); this module only gathers them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from hygeia.devices import mllp, mqtt, registry
from hygeia.devices.commands import merge_commands
from hygeia.server.extensions import CliCommand, PillarHost

PARTS = (mllp, mqtt, registry)


class DevicesPillar:
    """HL7 v2 over MLLP, the MQTT gateway and the device registry."""

    name = "devices"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        for part in PARTS:
            part.serve_options(group)

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        from hygeia.devices.alarms import DeviceAlarms

        host.add_event_consumer(DeviceAlarms(host))
        for part in PARTS:
            part.install(host, options)

    def commands(self) -> Sequence[CliCommand]:
        return merge_commands(command for part in PARTS for command in part.commands())

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        lines: list[str] = []
        for part in PARTS:
            lines.extend(part.demo(host, fhir_base))
        return lines


PILLAR = DevicesPillar()
