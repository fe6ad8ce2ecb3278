"""The ``hygeia`` command's user errors: one ``error:`` line that says how to fix it.

A user who names a missing file, a file that is not JSON, a database URL of
an unknown scheme, a PostgreSQL server that is down or a role that does not
exist, made a mistake the command can explain; a traceback explains nothing
to them.  :func:`describe` turns those exceptions into one sentence with the
fix; anything else is a bug of Hygeia and keeps its traceback.  ``hygeia
--debug`` shows the traceback of user errors too.

Exception tree::

    UserError            raised by the commands themselves (bad flag values ...)
    (foreign)            FileNotFoundError, PermissionError, IsADirectoryError, OSError
                         on a file; orjson.JSONDecodeError, EOFError (truncated gzip);
                         sqlite3.DatabaseError; psycopg.OperationalError;
                         SchemaVersionError (PendingMigrations: run ``hygeia db migrate``);
                         SecretKeyUnreadable (a secret key file that holds no key)
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import NoReturn
from urllib.parse import urlsplit

import orjson

from hygeia.fhir.spec.logical import ResourceTypeError
from hygeia.server.auth.secrets import SecretKeyUnreadable
from hygeia.store import DEFAULT_URL, PendingMigrations, SchemaVersionError

URL_FORMS = "sqlite:///path/file.db or postgresql://user@host:port/dbname"


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose mistakes (a missing argument, an unknown command or flag)
    are one ``error:`` line naming the command and where its options are listed, like
    every other user error; argparse's default repeats the whole usage first."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; run '{self.prog} --help' for the "
                     "options\n")


class UserError(Exception):
    """A mistake in the command line; the message is the ``error:`` line, fix included."""


def check_database_url(url: str) -> None:
    """UserError unless ``url`` names a database Hygeia can open (before touching it)."""
    if url.startswith("sqlite:///"):
        if not url[len("sqlite:///"):].split("?", 1)[0]:
            raise UserError(f"--db {url} names no file: give a path such as {DEFAULT_URL}")
        return
    if not url.startswith(("postgresql://", "postgres://")):
        raise UserError(f"--db {url} is not a database URL Hygeia knows: use {URL_FORMS}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as error:
        raise UserError(f"--db {url}: {error}; use {URL_FORMS}") from None
    if not parts.hostname and "host=" not in parts.query:
        raise UserError(f"--db {url} names no host: use {URL_FORMS}")


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is out of range: give a port from 1 to 65535 "
                        "(for example --port 8080)")


def describe(error: BaseException, db_url: str | None) -> str | None:
    """The ``error:`` line for a user error, or None when ``error`` is a bug."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, PendingMigrations):
        return (f"--db {db_url}: the database needs schema migrations "
                f"({', '.join(error.pending)}): run `hygeia db migrate --db {db_url}` first, "
                "or start the server with --migrate")
    if isinstance(error, SchemaVersionError | SecretKeyUnreadable | ResourceTypeError):
        return str(error)
    if isinstance(error, sqlite3.DatabaseError):
        return _sqlite_problem(error, db_url)
    if _is_postgres_connection_error(error):
        return (f"--db {db_url}: cannot connect to PostgreSQL ({_first_reason(error)}): "
                "check that the server runs and that the URL's user, host, port and "
                "database exist")
    if isinstance(error, orjson.JSONDecodeError | EOFError):
        return reading_problem(error)
    if isinstance(error, OSError) and (error.filename is not None
                                       or isinstance(error, FileNotFoundError)):
        return f"{_file_of(error)}: {reading_problem(error)}"
    return None


def reading_problem(error: OSError | EOFError | ValueError) -> str:
    """What went wrong reading one file, with the fix, without the file's name (the
    caller names it: ``hygeia load`` and ``validate`` report a bad file and go on).

    A read can fail after the file opened (``EIO`` from a failing disk or network
    share): that error carries no file name, and Python's text for it says nothing a
    user can act on.
    """
    if isinstance(error, orjson.JSONDecodeError):
        return f"not valid JSON ({error}): fix or re-export the file"
    if isinstance(error, EOFError):
        return f"a compressed file ends too early ({error}): copy or download it again"
    if isinstance(error, FileNotFoundError):
        return "no such file or folder; check the path"
    if isinstance(error, PermissionError):
        return "permission denied; make it readable for this user"
    if isinstance(error, OSError) and error.filename is None:
        return (f"cannot be read ({error.strerror or error}); check the disk or network "
                "share it is on, or copy the file again")
    if isinstance(error, OSError):
        return f"{error.strerror or error}; check the path"
    return str(error)


def _sqlite_problem(error: sqlite3.DatabaseError, db_url: str | None) -> str:
    if "not a database" in str(error):
        return (f"--db {db_url}: {error} (not a SQLite database): give the path of a Hygeia "
                "database, or a new file name to make one")
    return (f"--db {db_url}: {error}: check that its folder exists and this user may write "
            "there")


def _is_postgres_connection_error(error: BaseException) -> bool:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - both are dependencies
        return False
    return isinstance(error, psycopg.OperationalError | psycopg_pool.PoolTimeout)


def _first_reason(error: BaseException) -> str:
    """psycopg's message spans lines and repeats the address: keep what went wrong."""
    text = str(error).strip()
    reason = text.rsplit(" failed: ", 1)[-1].splitlines()[0] if text else type(error).__name__
    return reason.replace("FATAL:", "").strip()


def _file_of(error: OSError) -> str:
    if error.filename is not None:
        return str(error.filename)
    return str(error.args[0]).split(": ", 1)[0] if error.args else "file"
