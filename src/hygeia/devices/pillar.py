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
from hygeia.server.extensions import CliCommand, ListenAddress, PillarHost

PARTS = (mllp, mqtt, registry)


class DevicesPillar:
    """HL7 v2 over MLLP, the MQTT gateway and the device registry."""

    name = "devices"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        for part in PARTS:
            part.serve_options(group)

    def listen_addresses(self, options: Mapping[str, Any], host: str) -> list[ListenAddress]:
        """The MLLP port (``--mllp-port``, on ``--host``), which ``hygeia serve`` binds
        before the fork so the MLLP listener serves in every serving process (ADR 0029).
        The MQTT gateway is a client of its broker: no port of its own."""
        port = options.get("mllp_port")
        if port is None:
            return []
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"--mllp-port {port} is out of range: give a port from 1 to "
                             "65535")
        return [ListenAddress("mllp", host, int(port))]

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
