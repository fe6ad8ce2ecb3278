"""Schemathesis against every operation of ``/fhir/openapi.json`` (all ~1,600 of them),
checking that no request gets a 5xx. CI runs a bounded subset
(tests/api/test_schemathesis.py); this is the whole run, for before a release.

    python -m benchmarks.schemathesis_full [--db sqlite|postgresql] [--max-examples 5]
        [--phases coverage,fuzzing,stateful] [--include-path-regex REGEX]

Exits with schemathesis's status (non-zero when a server error was found); the
report lists each failing request with a curl line to reproduce it. Measured on two
cores, SQLite, ``--max-examples 3 --phases coverage,fuzzing``: 1,616 operations,
63,314 requests, no server error, 176 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from benchmarks.common import DEFAULT_PG, Server


def _database(kind: str, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'fuzz.db'}"
    name = f"hygeia_fuzz_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DEFAULT_PG, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{DEFAULT_PG.rsplit('/', 1)[0]}/{name}"


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        with psycopg.connect(DEFAULT_PG, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" '
                               "WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--max-examples", type=int, default=5)
    parser.add_argument("--phases", default="coverage,fuzzing,stateful")
    parser.add_argument("--include-path-regex", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = _database(args.db, Path(folder))
        server = Server(url, "--files", str(Path(folder) / "files"), cwd=Path(folder))
        try:
            command = [sys.executable, "-m", "schemathesis.cli", "run",
                       f"{server.base}/openapi.json", "--checks", "not_a_server_error",
                       "--max-examples", str(args.max_examples), "--phases", args.phases,
                       "--generation-database", "none", "--request-timeout", "60",
                       "--no-color"]
            if args.include_path_regex:
                command += ["--include-path-regex", args.include_path_regex]
            started = time.perf_counter()
            status = subprocess.run(command, cwd=folder).returncode
            print(f"schemathesis on {args.db}: exit {status} after "
                  f"{time.perf_counter() - started:.0f} s")
        finally:
            server.stop()
            _drop(url)
    sys.exit(status)


if __name__ == "__main__":
    main()
