"""``hygeia devices``: the device registry from the command line.

``list`` prints every Device with its identifier, type, status, the patient it
measures now and when it last reported; ``assign`` associates a device with a
patient from now (or ``--start``) on; ``status`` sets a Device's lifecycle
status. Errors are one ``error:`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hygeia.devices.registry.statuses import DEVICE_STATUSES
from hygeia.fhir.outcome import FhirError, NotFound
from hygeia.store import DEFAULT_URL, open_repository

if TYPE_CHECKING:
    from rich.table import Table

    from hygeia.devices.registry.listing import DeviceRow
    from hygeia.server import FhirService

# The CLI builds this command's parser on every start: the registry's functions, the
# server and rich are imported when an action runs.

EPILOG = """examples:
  hygeia devices list --db sqlite:///./hygeia.db
  hygeia devices assign --db sqlite:///./hygeia.db 'urn:hygeia:mqtt:device|ward-3/monitor-7' 123
  hygeia devices status --db sqlite:///./hygeia.db 'urn:hygeia:mqtt:device|ward-3/bed-7' inactive

A device is named by an identifier, system|value (quote it: | is a pipe to the shell)."""


@contextmanager
def _service(url: str) -> Iterator[FhirService]:
    from hygeia.server import FhirService

    repository = open_repository(url)
    try:
        yield FhirService(repository)
    finally:
        repository.close()


def list_devices(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hygeia.devices.registry.listing import device_rows

    with _service(args.db) as service, service.reader() as session:
        rows = device_rows(session)
    if args.plain or not sys.stdout.isatty():
        print_plain(rows)
    else:
        Console().print(_table(rows))
    return 0


HEADINGS = ("identifier", "type", "status", "patient", "last seen")


def print_plain(rows: list[DeviceRow]) -> None:
    """Tab-separated, a heading line first: for scripts and pipes."""
    print("\t".join(HEADINGS))
    for row in rows:
        print("\t".join((row.identifier or f"Device/{row.id}", row.type, row.status,
                         row.patient, row.last_seen)))


def _table(rows: list[DeviceRow]) -> Table:
    from rich.table import Table

    table = Table(*HEADINGS, title=f"{len(rows)} device{'' if len(rows) == 1 else 's'}")
    for row in rows:
        table.add_row(row.identifier or f"Device/{row.id}", row.type, row.status,
                      row.patient or "-", row.last_seen or "never")
    return table


def assign(args: argparse.Namespace) -> int:
    from hygeia.devices.registry.association import associate
    from hygeia.devices.registry.devices import find_device, parse_identifier

    system, value = parse_identifier(args.device)
    with _service(args.db) as service, service.transaction() as session:
        device = find_device(session, system, value)
        if device is None:
            raise NotFound(f"No Device has the identifier {args.device}; `hygeia devices "
                           "list` shows the known ones.", expression="Device.identifier")
        statement = associate(session, device.id, args.patient, start=args.start,
                              end=args.end)
    print(f"Device/{device.id} ({args.device}) measures Patient/{args.patient}: "
          f"DeviceUseStatement/{statement}")
    return 0


def status(args: argparse.Namespace) -> int:
    from hygeia.devices.registry.devices import find_device, parse_identifier, set_device_status

    system, value = parse_identifier(args.device)
    with _service(args.db) as service, service.transaction() as session:
        device = find_device(session, system, value)
        if device is None:
            raise NotFound(f"No Device has the identifier {args.device}.",
                           expression="Device.identifier")
        changed = set_device_status(session, device.id, args.status)
    print(f"Device/{device.id} ({args.device}) is {args.status}"
          f"{'' if changed else ' (unchanged)'}")
    return 0


class DevicesCommand:
    """``hygeia devices list|assign|status``."""

    name = "devices"
    help = "list devices, associate one with a patient, set its status"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        actions = parser.add_subparsers(dest="devices_action", metavar="ACTION",
                                        title="actions", required=True)
        listing = self._action(actions, "list", "list every device", list_devices)
        listing.add_argument("--plain", action="store_true",
                             help="tab-separated lines even on a terminal (default: a table "
                                  "on a terminal, plain in a pipe)")
        linking = self._action(actions, "assign", "associate a device with a patient", assign)
        linking.add_argument("device", metavar="DEVICE_IDENTIFIER",
                             help="the device's identifier, system|value")
        linking.add_argument("patient", metavar="PATIENT_ID", help="the Patient's id")
        linking.add_argument("--start", default=None,
                             help="a FHIR dateTime the association starts (default now)")
        linking.add_argument("--end", default=None,
                             help="a FHIR dateTime it ends (default: until the device is "
                                  "assigned to someone else)")
        state = self._action(actions, "status", "set a device's status", status)
        state.add_argument("device", metavar="DEVICE_IDENTIFIER",
                           help="the device's identifier, system|value")
        state.add_argument("status", choices=DEVICE_STATUSES, help="the new status")

    @staticmethod
    def _action(actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                text: str, run: Callable[[argparse.Namespace], int]
                ) -> argparse.ArgumentParser:
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:]
                                    + ".", epilog=EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        action.add_argument("--db", default=DEFAULT_URL,
                            help=f"database URL (default {DEFAULT_URL})")
        action.set_defaults(devices_run=run)
        return action

    def run(self, args: argparse.Namespace) -> int:
        try:
            return int(args.devices_run(args))
        except FhirError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
