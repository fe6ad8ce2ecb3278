"""``hygeia devices messages`` and ``hygeia devices reprocess``: the HL7 v2 message log
from the command line (the log itself: :mod:`.messagelog`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hygeia.devices.mllp.outcomes import EXTENSION, FATAL, OK, TRANSIENT
from hygeia.fhir.outcome import FhirError
from hygeia.store import DEFAULT_URL, open_repository

if TYPE_CHECKING:
    from hygeia.devices.hl7v2.handling import Handler
    from hygeia.server import FhirService

# The CLI builds this command's parser on every start: the message log, the handlers
# and the server are imported when a subcommand runs.

EPILOG = """examples:
  hygeia devices messages --db sqlite:///hygeia.db
  hygeia devices messages --db sqlite:///hygeia.db --outcome fatal-error
  hygeia devices reprocess --db sqlite:///hygeia.db 3f5c...   (an id the list shows)
"""
OUTCOMES = (OK, TRANSIENT, FATAL)


class DevicesCommand:
    """``hygeia devices ...``: the devices pillar's commands, one subcommand each."""

    name = "devices"
    help = "the devices pillar: the HL7 v2 message log (messages, reprocess)"

    def __init__(self, handlers: Callable[[], Mapping[str, Handler]]) -> None:
        self.handlers = handlers

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        subcommands = parser.add_subparsers(dest="devices_command", metavar="COMMAND",
                                            required=True)
        listing = subcommands.add_parser(
            "messages", help="list logged HL7 v2 messages, newest first", epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        _database_flag(listing)
        listing.add_argument("--outcome", choices=OUTCOMES, default=None,
                             help="only messages with this outcome (default: all)")
        listing.add_argument("--count", type=int, default=50,
                             help="the most messages to list (default 50)")
        again = subcommands.add_parser(
            "reprocess", help="run the handler again on a logged message", epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        _database_flag(again)
        again.add_argument("id", help="the message's MessageHeader id (hygeia devices "
                                      "messages lists them)")

    def run(self, args: argparse.Namespace) -> int:
        try:
            if args.devices_command == "messages":
                return list_messages(args.db, args.outcome, args.count)
            return self.reprocess(args.db, args.id)
        except FhirError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    def reprocess(self, db: str, id: str) -> int:
        from hygeia.devices.mllp.inbound import Inbound

        with _service(db) as service:
            before = _outcome_of(service, id)
            after = Inbound(service, self.handlers()).reprocess(id)
        print(f"MessageHeader/{id}: {before} -> {after}")
        return 0


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_URL,
                        help=f"database URL (default {DEFAULT_URL})")


@contextmanager
def _service(db: str) -> Iterator[FhirService]:
    """The database as a Host; a SQLite file that does not exist is an error here (opening
    it would make an empty database and list nothing, hiding a mistyped path)."""
    if db.startswith("sqlite:///"):
        path = Path(db.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_file():
            raise FhirError(f"--db {db}: there is no database file {path}; give the --db "
                            "of the server that received the messages")
    from hygeia.server import FhirService

    repository = open_repository(db)
    try:
        yield FhirService(repository)
    finally:
        repository.close()


def _outcome_of(service: FhirService, id: str) -> str:
    from hygeia.devices.mllp.messagelog import find as find_logged

    with service.reader() as session:
        logged = find_logged(session, id)
    if logged is None:
        raise FhirError(f"no HL7 v2 message is logged as MessageHeader/{id}; "
                        "hygeia devices messages lists them")
    return logged.outcome


def list_messages(db: str, outcome: str | None, count: int) -> int:
    """Print the log, newest first: one line per message."""
    from hygeia.fhir.search.query import parse_query

    params = [("_sort", "-_lastUpdated"), ("_count", str(max(1, count)))]
    if outcome:
        params.append(("code", outcome))
    with _service(db) as service, service.reader() as session:
        page = session.search(parse_query("MessageHeader", params, registry=service.registry))
        rows = [_row(orjson.loads(match.content)) for match in page.matches
                if match.content is not None]
    header = ("ID", "RECEIVED", "SENDER", "TYPE", "MSH-10", "OUTCOME", "DETAIL")
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(6)]
    for row in [header, *rows]:
        line = "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=False))
        print(f"{line}  {row[6]}".rstrip())
    print(f"{len(rows)} message{'' if len(rows) == 1 else 's'}")
    return 0


def _row(resource: dict[str, Any]) -> tuple[str, str, str, str, str, str, str]:
    extensions = {ext.get("url"): ext for ext in resource.get("extension", [])}
    received = extensions.get(f"{EXTENSION}received-at", {}).get("valueInstant", "")
    control = extensions.get(f"{EXTENSION}control-id", {}).get("valueString", "")
    event = resource.get("eventCoding", {})
    issues: list[dict[str, Any]] = next(
        (item.get("issue", []) for item in resource.get("contained", [])), [])
    detail = "; ".join(issue.get("details", {}).get("text") or issue.get("diagnostics", "")
                       for issue in issues)
    return (resource["id"], received[:19].replace("T", " "),
            resource.get("source", {}).get("name", ""), event.get("display", event.get("code", "")),
            control, resource.get("response", {}).get("code", ""), detail)
