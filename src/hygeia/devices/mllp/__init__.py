"""HL7 v2 over MLLP: ``hygeia serve --mllp-port N`` receives ADT and ORU messages.

The listener (:mod:`.listener`) cuts MLLP blocks out of each connection
(:mod:`.framing`), each message is processed and logged (:mod:`.inbound`,
:mod:`.messagelog`) by the handler its ``MSH-9`` names, from the ``HANDLES``
tables of :mod:`hygeia.devices.hl7v2.adt` and :mod:`hygeia.devices.hl7v2.oru`,
and acknowledged once committed (:mod:`.acks`). docs/guide/devices-mllp.md is the
user's view.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hygeia.devices.mllp.commands import DevicesCommand
from hygeia.devices.mllp.limits import MllpLimits

if TYPE_CHECKING:
    from hygeia.devices.hl7v2.handling import Handler
    from hygeia.server.extensions import CliCommand, PillarHost

# The CLI imports this package on every start (through the pillar): the handlers, the
# listener and the server behind them are imported by install() and handlers().

_PORTS: dict[int, int] = {}  # the MLLP port install() set up, by id of the host (for demo)


def handlers() -> dict[str, Handler]:
    """Message type (``ADT^A01``) -> handler, from every handler module's ``HANDLES``;
    two modules claiming one type is a bug, refused at start-up."""
    from hygeia.devices.hl7v2 import adt, oru

    found: dict[str, Handler] = {}
    for table in (adt.HANDLES, oru.handles()):  # ORU's remembers: one per listener
        for message_type, handler in table.items():
            if message_type in found:
                raise RuntimeError(f"two HL7 v2 handlers for {message_type}")
            found[message_type] = handler
    return found


def serve_options(group: argparse._ArgumentGroup) -> None:
    """Add this part's ``hygeia serve`` flags."""
    limits = MllpLimits()
    group.add_argument("--mllp-port", type=int, default=None, metavar="N",
                       help="receive HL7 v2 messages over MLLP on this port, on --host "
                            "(default: off; 2575 is HL7's registered port)")
    group.add_argument("--mllp-max-connections", type=int, default=limits.max_connections,
                       metavar="N", help="open MLLP connections at once; more are closed "
                                         f"(default {limits.max_connections})")
    group.add_argument("--mllp-idle-timeout", type=float, default=limits.idle_timeout,
                       metavar="SECONDS",
                       help="an MLLP connection silent this long is closed, and a message "
                            f"must arrive within it (default {limits.idle_timeout:g})")
    group.add_argument("--mllp-max-message-kb", type=int,
                       default=limits.max_message_bytes // 1024, metavar="KB",
                       help="largest HL7 v2 message accepted; a longer one is answered AR "
                            f"(default {limits.max_message_bytes // 1024}, 1 MiB)")


def install(host: PillarHost, options: Mapping[str, Any]) -> None:
    """Register the MLLP listener on ``host`` when ``--mllp-port`` asks for it."""
    port = options.get("mllp_port")
    if port is None:
        return
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--mllp-port {port} is out of range: give a port from 1 to 65535")
    limits = MllpLimits(max_connections=max(1, int(options.get("mllp_max_connections", 100))),
                        idle_timeout=max(0.1, float(options.get("mllp_idle_timeout", 300.0))),
                        max_message_bytes=max(1, int(options.get("mllp_max_message_kb",
                                                                 1024))) * 1024)
    from hygeia.devices.mllp.inbound import Inbound
    from hygeia.devices.mllp.listener import MllpListener

    _PORTS[id(host)] = int(port)
    inbound = Inbound.grouped(host, handlers())
    host.add_listener(MllpListener(inbound, host.settings.http.host, int(port), limits))


def commands() -> Sequence[CliCommand]:
    return [DevicesCommand(handlers)]


def demo(host: PillarHost, fhir_base: str) -> list[str]:
    """How to send a first message (when ``--mllp-port`` is on; else how to turn it on)."""
    port = _PORTS.get(id(host))
    if port is None:
        return ["HL7 v2 over MLLP is off: add --mllp-port 2575 to receive ADT and ORU "
                "messages (docs/guide/devices-mllp.md)."]
    address = host.settings.http.host
    message = ("MSH|^~\\\\&|DEMO|WARD|HYGEIA|HOSP|20240301080000+0000||ADT^A01|DEMO0001|P|2.5"
               "\\rPID|1||DEMO-1^^^HOSP^MR||Demo^Dora||19700101|F"
               "\\rPV1|1|I|ICU^101^A^HOSP||||||||||||||||DEMO-V1^^^HOSP^VN")
    return [
        f"HL7 v2 over MLLP on {address}:{port}: admit a demo patient to bed ICU 101 A",
        f"  printf '{message}\\r' > demo-a01.hl7",
        f"  mllp_send --loose --port {port} --file demo-a01.hl7 {address}",
        f"  curl -s '{fhir_base}/Encounter?identifier=DEMO-V1'",
        f"  curl -s '{fhir_base}/MessageHeader?response-id=DEMO0001'",
    ]
