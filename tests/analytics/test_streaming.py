"""A view that fails part way through a streamed answer (after the first 1,000 rows,
which are computed before the answer starts) never looks like a complete one: over
real HTTP the chunked body is cut without its last chunk, so the client's read fails;
``hygeia view run`` prints one ``error:`` line naming the resource, exits 2 and
leaves no ``--out`` file. SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import BACKENDS, ServerProcess, backend_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
GOOD = 1200  # more than the 1,000 rows computed before the answer starts
# one value per row unless collection: true, so a patient with two names fails
FAMILY: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "family", "status": "active",
    "resource": "Patient",
    "select": [{"column": [{"name": "id", "path": "id", "type": "id"},
                           {"name": "family", "path": "name.family"}]}],
}


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           analytics_installed: None) -> Iterator[ServerProcess]:
    with backend_server(request, tmp_path_factory, "vdstream") as process:
        entries = [{"resource": {"resourceType": "Patient", "id": f"p{n:05d}",
                                 "name": [{"family": f"F{n}"}]},
                    "request": {"method": "PUT", "url": f"Patient/p{n:05d}"}}
                   for n in range(GOOD)]
        loaded = process.client.post("", content=orjson.dumps(
            {"resourceType": "Bundle", "type": "batch", "entry": entries}), headers=FHIR_JSON,
            timeout=300)
        assert loaded.status_code == 200, loaded.text[:500]
        bad = {"resourceType": "Patient", "id": "twonames",
               "name": [{"family": "One"}, {"family": "Two"}]}
        made = process.client.put("Patient/twonames", json=bad, headers=FHIR_JSON)
        assert made.status_code == 201, made.text
        yield process


def body(server: ServerProcess, format: str) -> bytes:
    parameters = [{"name": "viewResource", "resource": FAMILY},
                  {"name": "_format", "valueCode": format}]
    request = {"resourceType": "Parameters", "parameter": parameters}
    with server.client.stream("POST", "$viewdefinition-run", content=orjson.dumps(request),
                              headers=FHIR_JSON, timeout=120) as answer:
        assert answer.status_code == 200  # the head left before the failing resource was read
        return answer.read()


@pytest.mark.parametrize("format", ["json", "ndjson", "csv", "parquet"])
def test_a_late_failure_cuts_the_answer(server: ServerProcess, format: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        body(server, format)
    # the server is fine afterwards, and the rows before the failure are all there
    fine = {"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": {**FAMILY, "where": [
            {"path": "name.count() = 1"}]}}, {"name": "_format", "valueCode": "ndjson"}]}
    answer = server.client.post("$viewdefinition-run", content=orjson.dumps(fine),
                                headers=FHIR_JSON, timeout=120)
    assert answer.status_code == 200, answer.text[:300]
    assert len(answer.text.splitlines()) == GOOD


def test_a_get_is_cut_the_same_way(server: ServerProcess) -> None:
    made = server.client.put("ViewDefinition/family", json={**FAMILY, "id": "family"},
                             headers=FHIR_JSON)
    assert made.status_code in (200, 201), made.text
    with server.client.stream("GET", "ViewDefinition/family/$viewdefinition-run",
                              params={"_format": "csv"}, timeout=120) as answer:
        assert answer.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            answer.read()
    url = f"{server.base}/ViewDefinition/family/$viewdefinition-run?_format=ndjson"
    curl = subprocess.run(["curl", "-s", "-S", "-o", "/dev/null", url], capture_output=True,
                          text=True, timeout=120)
    assert curl.returncode == 18, (curl.returncode, curl.stderr)  # the guide says so


def test_the_command_line_says_so_and_leaves_no_file(server: ServerProcess,
                                                     tmp_path: Path) -> None:
    view = tmp_path / "family.json"
    view.write_bytes(orjson.dumps(FAMILY))
    out = tmp_path / "rows.csv"
    run = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "view", "run", str(view),
                          "--db", server.db_url, "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Patient/twonames" in lines[0] and f"after {GOOD:,} rows" in lines[0], lines[0]
    assert not out.exists() and not list(tmp_path.glob("rows.csv*"))
    to_stdout = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "view", "run",
                                str(view), "--db", server.db_url, "--format", "ndjson"],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert to_stdout.returncode == 2 and "error: " in to_stdout.stderr, to_stdout.stderr
