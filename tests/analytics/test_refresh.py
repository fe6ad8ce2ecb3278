"""Materialized tables follow the change feed in a real ``hygeia serve`` (SQLite and
PostgreSQL): a create, update or delete replaces exactly that resource's rows, and
``hygeia view status`` shows the cursor caught up."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hygeia.store import open_repository, reading
from tests.conftest import BACKENDS, ServerProcess, backend_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
NAMES: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "patient_name", "status": "active",
    "resource": "Patient",
    "select": [{"column": [{"name": "id", "path": "id", "type": "id"}]},
               {"forEach": "name", "column": [{"name": "family", "path": "family"}]}],
}


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           analytics_installed: None) -> Iterator[ServerProcess]:
    with backend_server(request, tmp_path_factory, "refresh") as process:
        yield process


def patient(server: ServerProcess, id: str, *families: str) -> None:
    body = {"resourceType": "Patient", "id": id, "name": [{"family": f} for f in families]}
    answer = server.client.put(f"Patient/{id}", json=body, headers=FHIR_JSON)
    assert answer.status_code in (200, 201), answer.text


def table_rows(db: str) -> list[tuple[str, str]]:
    table = "analytics.view_patient_name" if db.startswith("postgresql") else \
        "view_patient_name"
    with open_repository(db) as repository, reading(repository) as session:
        rows = session.execute(f"SELECT id, family FROM {table}").fetchall()
    return sorted((str(a), str(b)) for a, b in rows)


def eventually(db: str, expected: list[tuple[str, str]]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if table_rows(db) == expected:
            return
        time.sleep(0.2)
    assert table_rows(db) == expected


def hygeia(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_writes_change_exactly_their_rows(server: ServerProcess, tmp_path: Path) -> None:
    db = server.db_url
    patient(server, "a", "Ames")
    patient(server, "b", "Bell", "Bell-Ross")
    view = tmp_path / "names.json"
    view.write_bytes(orjson.dumps(NAMES))
    made = hygeia("view", "materialize", str(view), "--db", db, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert table_rows(db) == [("a", "Ames"), ("b", "Bell"), ("b", "Bell-Ross")]

    patient(server, "c", "Cole")  # create
    patient(server, "b", "Ross")  # update: two rows become one
    assert server.client.delete("Patient/a").status_code in (200, 204)  # delete
    eventually(db, [("b", "Ross"), ("c", "Cole")])

    status = hygeia("view", "status", "--db", db, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    line = next(s for s in status.stdout.splitlines() if "view_patient_name" in s)
    assert "\tlag 0\t" in line and "refreshed by the change feed" in line, status.stdout
