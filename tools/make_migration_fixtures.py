"""Regenerate the databases old Hygeias made, which tests/cli/test_db_migrate.py migrates.

Each commit in ``COMMITS`` loads one small Synthea bundle with its own ``hygeia
load``: once into a SQLite file (stored gzipped) and once into a fresh PostgreSQL
database (stored as a plain ``pg_dump --no-owner`` script).  Real old code makes
them, so the tests see exactly the layout (tables, indexes, recorded version)
those releases left behind, not our idea of it.

Usage (from the repository root, PostgreSQL reachable as below)::

    python tools/make_migration_fixtures.py \
        --postgres postgresql://postgres@127.0.0.1:5432/postgres

Each commit's source comes from ``git archive`` into a temporary folder and runs
with ``PYTHONPATH`` pointing at it, in the current environment: the runtime
dependencies of those commits are a subset of today's (0c8a891's ``granian`` is
needed only to serve, not to load).  The files land in tests/fixtures/databases/.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "databases"
BUNDLE = ROOT / "tests" / "fixtures" / "synthea" / \
    "006-62247e85-c8c1-4047-90b3-e0b3a9c59600.json.gz"  # one patient, 126 resources
# the release before the hardening issue, and the commit where issue 15 starts
COMMITS = {"0c8a891": "release before the hardening issue",
           "c8189f5": "main where issue 15 starts"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", required=True,
                        help="URL of a PostgreSQL server's maintenance database")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for commit in COMMITS:
        with tempfile.TemporaryDirectory(prefix=f"hygeia-{commit}-") as folder:
            source = Path(folder)
            _extract(commit, source)
            _make_sqlite(commit, source)
            _make_postgres(commit, source, args.postgres)


def _extract(commit: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def _load(source: Path, url: str) -> None:
    environment = {**os.environ, "PYTHONPATH": str(source / "src")}  # before our own src
    subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--db", url, "--quiet",
                    "--workers", "0", str(BUNDLE)], check=True, env=environment, cwd=source)


def _make_sqlite(commit: str, source: Path) -> None:
    path = source / "old.db"
    _load(source, f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:  # one self-contained, compact file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
    connection = sqlite3.connect(path)
    connection.execute("VACUUM")
    connection.close()
    target = OUT / f"hygeia-{commit}.sqlite.gz"
    with path.open("rb") as raw, target.open("wb") as out, \
            gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed:  # reproducible bytes
        shutil.copyfileobj(raw, packed)
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size:,} bytes")


def _make_postgres(commit: str, source: Path, maintenance: str) -> None:
    import psycopg

    name = f"hygeia_fixture_{commit}"
    url = urlunsplit(urlsplit(maintenance)._replace(path=f"/{name}"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    try:
        _load(source, url)
        dump = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", "--dbname", url],
                              check=True, capture_output=True, text=True).stdout
    finally:
        with psycopg.connect(maintenance, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name}")
    target = OUT / f"hygeia-{commit}.postgres.sql.gz"
    with target.open("wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed:
        packed.write(dump.encode())
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
