"""The device registry: Device and DeviceMetric lifecycle and patient association.

Devices are found by identifier (:mod:`.devices`), associated with patients
over time through DeviceUseStatement (:mod:`.association`), and listed or
assigned from the command line (``hygeia devices``, :mod:`.cli`). The
protocol parts (MQTT, MLLP) use these functions to attribute what a device
reports to the device and to its patient.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hygeia.devices.registry.association import (
        Association,
        associate,
        associations,
        patient_of,
    )
    from hygeia.devices.registry.devices import (
        ensure_device,
        find_device,
        identifier_criteria,
        set_device_status,
        set_metric_status,
    )
    from hygeia.devices.registry.parents import children, ensure_parent_parameter
    from hygeia.server.extensions import CliCommand, PillarHost

__all__ = ["Association", "associate", "associations", "children", "commands", "demo",
           "ensure_device", "ensure_parent_parameter", "find_device", "identifier_criteria",
           "install", "patient_of", "serve_options", "set_device_status", "set_metric_status"]

# Where each function lives: imported on first use (PEP 562), because the CLI imports
# this package on every start (through the pillar) and these modules need the server.
_HOMES = {"Association": "association", "associate": "association",
          "associations": "association", "patient_of": "association",
          "ensure_device": "devices", "find_device": "devices",
          "identifier_criteria": "devices", "set_device_status": "devices",
          "set_metric_status": "devices", "children": "parents",
          "ensure_parent_parameter": "parents"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups are plain module attributes
    return value


def serve_options(group: argparse._ArgumentGroup) -> None:
    """The registry adds no ``hygeia serve`` flag."""


def install(host: PillarHost, options: Mapping[str, Any]) -> None:
    """Nothing to register: the registry is functions over the store, and a command (the
    MQTT gateway stores the ``Device?parent`` search parameter it needs, :mod:`.parents`)."""


def commands() -> Sequence[CliCommand]:
    from hygeia.devices.registry.cli import DevicesCommand

    return [DevicesCommand()]


def demo(host: PillarHost, fhir_base: str) -> list[str]:
    return []
