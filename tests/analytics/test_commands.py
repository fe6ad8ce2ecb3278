"""``hygeia view run|materialize|list`` and ``hygeia sql`` as real processes on SQLite and
PostgreSQL: rows to a file, a materialized table and Parquet file, DuckDB over them,
names that collide refused, every error one ``error:`` line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from hygeia.store import open_repository, reading
from tests.conftest import BACKENDS, _drop_database

PATIENTS: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "patient", "status": "active",
    "resource": "Patient",
    "select": [{"column": [{"name": "id", "path": "id", "type": "id"},
                           {"name": "gender", "path": "gender", "type": "code"},
                           {"name": "born", "path": "birthDate", "type": "date"}]},
               {"forEachOrNull": "name", "column": [
                   {"name": "family", "path": "family", "type": "string"}]}],
}


def hygeia(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path, analytics_installed: None
       ) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/views.db"
    else:
        base = request.getfixturevalue("postgres_url").rsplit("/", 1)[0]
        url = f"{base}/hygeia_views_{tmp_path.name[-8:].replace('-', '_').lower()}"
    people = tmp_path / "people.ndjson"
    people.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in (
        {"resourceType": "Patient", "id": "a", "gender": "female", "birthDate": "1960-02-02",
         "name": [{"family": "Ames"}]},
        {"resourceType": "Patient", "id": "b", "gender": "male", "birthDate": "1990-03-03"},
        {"resourceType": "Patient", "id": "c", "gender": "female", "birthDate": "2001-04-04",
         "name": [{"family": "Cole"}, {"family": "Cole-Smith"}]},
    )))
    loaded = hygeia("load", str(people), "--db", url, "--quiet", cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    yield url
    if request.param != "sqlite":
        _drop_database(url)


def test_view_run_writes_each_format(db: str, tmp_path: Path) -> None:
    view = tmp_path / "patient.json"
    view.write_bytes(orjson.dumps(PATIENTS))
    shown = hygeia("view", "run", str(view), "--db", db, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "id,gender,born,family", "a,female,1960-02-02,Ames", "b,male,1990-03-03,",
        "c,female,2001-04-04,Cole", "c,female,2001-04-04,Cole-Smith"]
    lines = hygeia("view", "run", str(view), "--db", db, "--format", "ndjson", "--limit", "2",
                   cwd=tmp_path)
    assert [orjson.loads(line)["id"] for line in lines.stdout.splitlines()] == ["a", "b"]
    out = tmp_path / "p.parquet"
    assert hygeia("view", "run", str(view), "--db", db, "--format", "parquet", "--out",
                  str(out), cwd=tmp_path).returncode == 0
    assert pq.read_table(out).column("family").to_pylist() == [
        "Ames", None, "Cole", "Cole-Smith"]


def test_materialize_then_sql(db: str, tmp_path: Path) -> None:
    view = tmp_path / "patient.json"
    view.write_bytes(orjson.dumps(PATIENTS))
    made = hygeia("view", "materialize", str(view), "--db", db, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "4 rows" in made.stdout
    parquet = tmp_path / "analytics" / "view_patient.parquet"
    assert pq.read_table(parquet).num_rows == 4
    table = "analytics.view_patient" if db.startswith("postgresql") else "view_patient"
    with open_repository(db) as repository, reading(repository) as session:
        rows = session.execute(f"SELECT id, family FROM {table} ORDER BY id, family").fetchall()
    assert [tuple(r) for r in rows] == [("a", "Ames"), ("b", None), ("c", "Cole"),
                                        ("c", "Cole-Smith")]
    again = hygeia("view", "materialize", str(view), "--db", db, cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the same view refreshes its own table
    answer = hygeia("sql", "--db", db, "SELECT gender, count(DISTINCT id) AS patients "
                    "FROM view_patient GROUP BY gender ORDER BY gender", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.splitlines() == ["gender,patients", "female,2", "male,1"]
    listed = hygeia("view", "list", "--db", db, cwd=tmp_path)
    assert "view_patient\t4 rows" in listed.stdout

    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps({**PATIENTS, "select": PATIENTS["select"][:1]}))
    clash = hygeia("view", "materialize", str(other), "--db", db, cwd=tmp_path)
    assert clash.returncode != 0
    assert clash.stderr.startswith("error: ") and "already owns" in clash.stderr
    assert len(clash.stderr.strip().splitlines()) == 1


def test_errors_are_one_line(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"resource": "Patient", "select": [
        {"column": [{"name": "x", "path": "name.("}]}]}))
    for args in (("view", "run", str(bad)), ("view", "materialize", str(bad)),
                 ("sql", "SELECT * FROM nowhere")):
        done = hygeia(*args, "--db", db, cwd=tmp_path)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    unnamed = tmp_path / "unnamed.json"
    unnamed.write_bytes(orjson.dumps({k: v for k, v in PATIENTS.items() if k != "name"}))
    done = hygeia("view", "materialize", str(unnamed), "--db", db, cwd=tmp_path)
    assert done.returncode == 2 and "needs a name" in done.stderr


@pytest.mark.parametrize("value", ["0", "-1", "86401", "soon"])
def test_the_parquet_interval_is_bounded(value: str, tmp_path: Path,
                                         analytics_installed: None) -> None:
    refused = hygeia("serve", "--db", f"sqlite:///{tmp_path}/x.db", "--port", "1",
                     "--view-parquet-seconds", value, cwd=tmp_path)
    assert refused.returncode == 2
    assert "--view-parquet-seconds" in refused.stderr and "error:" in refused.stderr, \
        refused.stderr
