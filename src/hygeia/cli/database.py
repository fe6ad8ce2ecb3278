"""``hygeia db``: the database's schema version, and bringing it forward.

``hygeia db status`` reads the versions a database records and compares them
with this Hygeia's migration streams (store/migrations), changing nothing;
``hygeia db migrate`` applies what is pending, each migration in its own
transaction, and can be run again at any time (a finished run does nothing).
"""

from __future__ import annotations

import argparse
from typing import Any

from hygeia.store import DEFAULT_URL

EPILOG = """examples:
  hygeia db status --db sqlite:///./hygeia.db
  hygeia db migrate --db postgresql://postgres@127.0.0.1:5432/hygeia

A server refuses a database with pending migrations unless started with
`hygeia serve --migrate`; exit status of `db status`: 0 up to date, 1 pending."""


def add_db_commands(commands: Any) -> None:
    database = commands.add_parser("db", help="show and apply schema migrations",
                                   description="Show and apply schema migrations.",
                                   epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    database.set_defaults(help_parser=database)
    actions = database.add_subparsers(dest="db_command", metavar="ACTION", title="actions")
    for name, text in (("status", "print each stream's recorded and current version"),
                       ("migrate", "apply the pending migrations")):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] +
                                    ".", epilog=EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        action.add_argument("--db", default=DEFAULT_URL,
                            help=f"database URL (default {DEFAULT_URL})")


def run_db(args: argparse.Namespace) -> int:
    if args.db_command == "status":
        return status(args.db)
    if args.db_command == "migrate":
        return migrate(args.db)
    args.help_parser.print_help()
    return 2


def status(url: str) -> int:
    """One line per stream; 1 when a migration is pending or the database is newer."""
    from hygeia.cli.errors import UserError
    from hygeia.store import NoDatabase, recorded_at, statuses

    try:
        found = recorded_at(url)
    except NoDatabase as error:
        raise UserError(f"--db {url}: {error}; `hygeia db migrate` makes a new one") from None
    if not found:
        print(f"{url}: no Hygeia tables yet (a new database); `hygeia db migrate` lays it out")
        return 1
    behind = False
    for stream in statuses(found):
        print(f"{stream.name}: {_state(stream)}")
        behind = behind or bool(stream.pending) or stream.newer
    return 1 if behind else 0


def _state(stream: Any) -> str:
    recorded = "none" if stream.recorded is None else str(stream.recorded)
    if stream.latest is None:
        return f"version {recorded} (not a stream this Hygeia knows; left alone)"
    if stream.newer:
        return (f"version {recorded}, newer than this Hygeia ({stream.latest}): "
                "it will not open this database")
    if not stream.pending:
        return f"version {recorded}, up to date"
    steps = "; ".join(f"{m.version} {m.description}" for m in stream.pending)
    return f"version {recorded}, {len(stream.pending)} pending to {stream.latest}: {steps}"


def migrate(url: str) -> int:
    """Apply what is pending (a new database is laid out); says what it did."""
    from hygeia.store import open_repository

    new = is_new_database(url)
    with open_repository(url, migrate=True) as repository:
        applied = repository.applied_migrations
        versions = repository.recorded_versions(30.0)
    for stream, migration in applied:
        print(f"applied {stream} {migration.version}: {migration.description}")
    now = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    done = "new database laid out" if new else "migrated" if applied else "nothing to migrate"
    print(f"{done}: {url} is at {now}")
    return 0


def is_new_database(url: str) -> bool:
    """No Hygeia tables there yet (or no database: opening makes one)."""
    from hygeia.store import NoDatabase, recorded_at

    try:
        return not recorded_at(url)
    except NoDatabase:
        return True
    except Exception:  # a PostgreSQL database that does not exist yet:
        return True  # opening creates it, or reports the real connection problem
