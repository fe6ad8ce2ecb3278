"""Killing ``hygeia load`` at random points and running it again stores exactly one load.

A real ``hygeia load`` process is killed with SIGKILL at random moments after it
started storing, then run again, killed again, and so on until a run completes;
the database must then hold exactly what one clean load holds: the same count
of every resource type, each Synthea patient found once by its identifier, and
no resource written twice (every one at version 1).  Transaction Bundles (whose
``POST`` entries get new server ids on every run) and NDJSON, on both
databases, into a database that already holds other data.
"""

from __future__ import annotations

import gzip
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from hygeia.server import FhirService
from hygeia.store import open_repository
from hygeia.store.plain_sql import reading
from tests.conftest import BACKENDS, _drop_database
from tests.helpers import FIXTURES, body, call, patient

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KILLS = 2  # kills per trial before the run that is let finish
SYNTHEA = "https://github.com/synthetichealth/synthea"  # the system of its patients' ids
RUN_SECONDS = 60  # a load that has not finished by then fails the test


@pytest.fixture(params=BACKENDS)
def new_database(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> Iterator[Callable[[], str]]:
    """Makes URLs of fresh databases on one backend (PostgreSQL ones dropped after)."""
    made: list[str] = []

    def new() -> str:
        if request.param == "sqlite":
            made.append(f"sqlite:///{tmp_path}/load{len(made)}.db")
        else:
            base = request.getfixturevalue("postgres_url").rsplit("/", 1)[0]
            made.append(f"{base}/hygeia_rerun_{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield new
    for url in made:
        if not url.startswith("sqlite"):
            _drop_database(url)


def bundles(folder: Path, copies: int) -> list[dict[str, Any]]:
    """``copies`` of each Synthea fixture as Bundle files, every uuid renamed per copy (so
    each copy is other patients), and the Bundles as JSON."""
    folder.mkdir()
    made = []
    for copy in range(copies):
        for fixture in sorted((FIXTURES / "synthea").glob("*.json.gz")):
            text = UUID.sub(lambda found, copy=copy: str(uuid.uuid5(
                uuid.NAMESPACE_URL, f"{copy}:{found.group().decode()}")).encode(),
                gzip.decompress(fixture.read_bytes()))
            (folder / f"{copy:02d}-{fixture.name}").write_bytes(gzip.compress(text, 1))
            made.append(orjson.loads(text))
    return made


def ndjson(folder: Path, copies: int) -> list[dict[str, Any]]:
    """The Bundles' resources as NDJSON, one file per type; Observations without their
    ids (a rerun must not store them twice although each gets a new server id)."""
    made = bundles(folder.parent / "source", copies)
    folder.mkdir()
    by_type: dict[str, list[bytes]] = {}
    for bundle in made:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Observation":
                resource = {key: value for key, value in resource.items() if key != "id"}
            by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    for resource_type, lines in by_type.items():
        (folder / f"{resource_type}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return made


def load_command(db: str, folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hygeia.cli.main", "load", "--quiet", "--db", db, *extra,
            str(folder)]


def stored(db: str) -> int:
    """Resources committed so far, read beside the running load (0 before its tables exist)."""
    try:
        if db.startswith("sqlite:///"):
            with closing(sqlite3.connect(db.removeprefix("sqlite:///"), timeout=5)) as connection:
                return int(connection.execute("SELECT count(*) FROM resource").fetchone()[0])
        with psycopg.connect(db, connect_timeout=5) as connection:
            row = connection.execute("SELECT count(*) FROM resource").fetchone()
            return int(row[0]) if row else 0
    except (sqlite3.Error, psycopg.Error):
        return 0


def started_storing(command: list[str], db: str) -> subprocess.Popen[bytes]:
    """Start the load; return once it committed something (or ended)."""
    before = stored(db)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + RUN_SECONDS
    while process.poll() is None and stored(db) <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    return process


def storing_seconds(command: list[str], db: str, total: int) -> float:
    """A whole load's time from its first commit to its last (``total`` resources stored)."""
    process = started_storing(command, db)
    started = time.monotonic()
    while stored(db) < total and time.monotonic() < started + RUN_SECONDS:
        time.sleep(0.01)
    seconds = time.monotonic() - started
    assert process.wait(RUN_SECONDS) == 0
    return seconds


def killed_load(command: list[str], db: str, rng: random.Random, span: float) -> bool:
    """Start the load and SIGKILL it a random part of ``span`` seconds after its first
    commit.  True when it was killed (False: it had finished)."""
    process = started_storing(command, db)
    time.sleep(rng.uniform(0, span))
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait(RUN_SECONDS)
    return killed


def finished_load(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS)
    assert result.returncode == 0, result.stderr
    return result


def counts(db: str, made: list[dict[str, Any]]) -> dict[str, Any]:
    """Resources per type (through the API), how many patients each Synthea patient
    identifier finds, and the stored versions per type."""
    types = sorted({entry["resource"]["resourceType"] for bundle in made
                    for entry in bundle["entry"]} | {"Patient"})
    identifiers = sorted({f"{identifier['system']}|{identifier['value']}"
                          for bundle in made for entry in bundle["entry"]
                          if entry["resource"]["resourceType"] == "Patient"
                          for identifier in entry["resource"].get("identifier", [])
                          if identifier.get("system") == SYNTHEA})
    with open_repository(db) as repository:
        service = FhirService(repository)
        per_type = {resource_type: body(call(service, "GET", resource_type,
                                             query=[("_summary", "count")]))["total"]
                    for resource_type in types}
        per_patient = {identifier: body(call(service, "GET", "Patient", query=[
            ("identifier", identifier), ("_summary", "count")]))["total"]
            for identifier in identifiers}
        with reading(repository) as session:
            versions = dict(session.execute(
                "SELECT res_type, count(*) FROM resource_version GROUP BY res_type").fetchall())
    assert identifiers and set(per_patient.values()) == {1}, "every patient stored once"
    return {"types": per_type, "patients": per_patient, "versions": versions}


def other_data(db: str, tmp_path: Path) -> None:
    """Data that was there before the load: a patient the load's files do not name."""
    path = tmp_path / "other.ndjson"
    path.write_bytes(orjson.dumps(patient("other", id="already-here")) + b"\n")
    finished_load(load_command(db, path, "--workers", "0"))


def rerun_until_complete(new_database: Callable[[], str], folder: Path, tmp_path: Path,
                         made: list[dict[str, Any]], seed: int, trials: int,
                         extra: tuple[str, ...] = ()) -> None:
    clean = new_database()
    other_data(clean, tmp_path)
    total = 1 + sum(len(bundle["entry"]) for bundle in made)  # with the other data
    span = storing_seconds(load_command(clean, folder, *extra), clean, total)
    expected = counts(clean, made)
    assert sum(expected["types"].values()) == total
    rng = random.Random(seed)
    partial = 0  # kills that left part of the data stored
    for _ in range(trials):
        target = new_database()
        other_data(target, tmp_path)
        for _ in range(KILLS):
            if killed_load(load_command(target, folder, *extra), target, rng, span):
                partial += 0 < stored(target) < total
        rerun = finished_load(load_command(target, folder, *extra))
        assert counts(target, made) == expected, rerun.stdout
    assert partial, "no kill landed while the load was storing; the test proved nothing"


def test_killed_bundle_loads_rerun_to_exactly_one_load(new_database: Callable[[], str],
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    made = bundles(folder, copies=3)  # 9 transaction Bundles, 1,656 resources
    rerun_until_complete(new_database, folder, tmp_path, made, seed=13, trials=3)


def test_killed_ndjson_loads_rerun_to_exactly_one_load(new_database: Callable[[], str],
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "ndjson"
    made = ndjson(folder, copies=16)  # 8,832 resources: three batches of 4,000
    rerun_until_complete(new_database, folder, tmp_path, made, seed=9, trials=2,
                         extra=("--workers", "2", "--upsert"))


def test_a_rerun_skips_what_was_loaded_and_reload_loads_it_again(tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    bundles(folder, copies=1)
    db = f"sqlite:///{tmp_path}/again.db"
    first = finished_load(load_command(db, folder))
    assert first.stdout.startswith("Loaded 552 resources from 3 files in ")
    again = finished_load(load_command(db, folder))
    assert again.stdout.startswith("Loaded 0 resources from 3 files (3 loaded before, "
                                   "skipped) in ")
    reload = finished_load(load_command(db, folder, "--reload"))
    assert reload.stdout.startswith("Loaded 552 resources from 3 files in ")
    with open_repository(db) as repository:
        service = FhirService(repository)
        assert body(call(service, "GET", "Patient?_summary=count"))["total"] == 6
