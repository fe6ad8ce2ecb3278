"""Bulk Data $export over real HTTP, as a bulk client runs it, including kill -9 and restart."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.api.test_limits_and_crash import amplified_bundle
from tests.conftest import ServerProcess, _drop_database

KICK_OFF = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


@pytest.fixture(autouse=True)
def bare_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count exactly what they stored: the servers run without the pillars,
    which derive data of their own from it (the clinical pillar scores vital signs)."""
    monkeypatch.setenv("HYGEIA_PILLARS", "none")
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def loaded(database_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, Counter[str]]]:
    """A server holding two amplified Synthea patients; the stored counts per type."""
    server = ServerProcess(database_url, "--files", str(tmp_path / "files"))
    bundle, _ = amplified_bundle(2)
    response = server.client.post("", content=orjson.dumps(bundle), headers=FHIR_JSON)
    assert response.status_code == 200
    counts = Counter(entry["resource"]["resourceType"] for entry in bundle["entry"])
    try:
        yield server, counts
    finally:
        server.stop()


def poll(client: httpx.Client, status_url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(status_url)
        if response.status_code != 202:
            return response
        assert response.headers["X-Progress"]
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(min(float(response.headers.get("Retry-After", "1")), 0.1))


def download(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    """Stream one output file line by line, as a client with little memory would."""
    lines = []
    with client.stream("GET", url, headers={"Accept": "application/fhir+ndjson"}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/fhir+ndjson"
        lines.extend(orjson.loads(line) for line in response.iter_lines() if line)
    return lines


def exported_counts(client: httpx.Client, manifest: dict[str, Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    ids: set[tuple[str, str]] = set()
    for item in manifest["output"]:
        lines = download(client, item["url"])
        assert len(lines) == item["count"]
        for line in lines:
            assert line["resourceType"] == item["type"]
            key = (line["resourceType"], line["id"])
            assert key not in ids, f"{key} exported twice"
            ids.add(key)
        counts[item["type"]] += len(lines)
    return counts


def test_a_bulk_client_exports_everything(loaded: tuple[ServerProcess, Counter[str]]) -> None:
    server, counts = loaded
    client = server.client
    started = client.get("$export", headers=KICK_OFF)
    assert started.status_code == 202, started.text
    status_url = started.headers["Content-Location"]
    assert status_url.startswith(server.base + "/_job/")
    done = poll(client, status_url)
    assert done.status_code == 200
    assert done.headers["Content-Type"].startswith("application/json")
    assert "Expires" in done.headers
    manifest = done.json()
    assert manifest["request"] == f"{server.base}/$export"
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    assert exported_counts(client, manifest) == counts
    assert client.delete(status_url).status_code == 202  # the client is done: clean up
    gone = client.get(status_url)
    assert gone.status_code == 404 and gone.json()["resourceType"] == "OperationOutcome"
    assert client.get(manifest["output"][0]["url"]).status_code == 404


def test_bad_kick_off_is_an_operation_outcome(
        loaded: tuple[ServerProcess, Counter[str]]) -> None:
    client = loaded[0].client
    no_prefer = client.get("$export", headers={"Accept": "application/fhir+json"})
    assert no_prefer.status_code == 400
    assert no_prefer.json()["issue"][0]["expression"] == ["Prefer"]
    bad_type = client.get("Patient/$export", params={"_type": "Practitioner"}, headers=KICK_OFF)
    assert bad_type.status_code == 400 and "compartment" in bad_type.text
    posted = client.post("Patient/$export", headers={**KICK_OFF, **FHIR_JSON}, content=orjson.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "_type",
                                                      "valueString": "Patient"}]}))
    assert posted.status_code == 202
    assert poll(client, posted.headers["Content-Location"]).status_code == 200


def test_cancel_while_running_or_done(loaded: tuple[ServerProcess, Counter[str]]) -> None:
    client = loaded[0].client
    started = client.get("$export", headers=KICK_OFF)
    status_url = started.headers["Content-Location"]
    assert client.delete(status_url).status_code == 202
    assert client.get(status_url).status_code == 404
    assert client.delete(status_url).status_code == 404


def wait_stopped(pid: int) -> None:
    """Wait until the kernel reports ``pid`` stopped (state T in /proc/PID/stat)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return
        if stat.rpartition(")")[2].split()[0] in ("T", "t"):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")


def test_kill_9_mid_export_then_restart_completes(database_url: str, tmp_path: Path) -> None:
    """Kill the server while the export has written a file it has not checkpointed.

    The server is frozen (SIGSTOP) the moment its first output file has data, then
    killed; the restarted server must take the job over, cut the file back to its
    last checkpoint and finish with every resource exactly once.
    """
    files = tmp_path / "files"
    server = ServerProcess(database_url, "--files", str(files))
    bundle, _ = amplified_bundle(5)
    assert server.client.post("", content=orjson.dumps(bundle), headers=FHIR_JSON).is_success
    counts = Counter(e["resource"]["resourceType"] for e in bundle["entry"]
                     if e["resource"]["resourceType"] in ("Observation", "Patient"))
    processes = process_tree(server.process.pid)
    # _elements makes each line cost a parse, which widens the moment to catch
    started = server.client.get("$export", params={
        "_type": "Observation,Patient", "_elements": "status,gender"}, headers=KICK_OFF)
    status_url = started.headers["Content-Location"]
    job_id = status_url.rsplit("/", 1)[1]
    first_file = files / "jobs" / job_id / "Observation-1.ndjson"
    deadline = time.monotonic() + 30
    while not (first_file.exists() and first_file.stat().st_size):
        assert time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.001)
    for pid in processes:  # freeze at once: the job can neither checkpoint nor finish
        os.kill(pid, signal.SIGSTOP)
    for pid in processes:  # a signal is delivered asynchronously: read the job once frozen
        wait_stopped(pid)
    state, attempts, progress = job_row(database_url, job_id)
    assert state == "running" and attempts == 1, "the export ended before the kill"
    assert progress is None or progress["type"] == 0
    server.kill()
    for pid in processes[1:]:  # frozen helpers never see their pipes close: kill them too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    restarted = ServerProcess(database_url, "--files", str(files))
    try:
        done = poll(restarted.client, f"_job/{job_id}")  # a new port: the same job
        assert done.status_code == 200
        assert exported_counts(restarted.client, done.json()) == counts
        assert job_row(database_url, job_id)[:2] == ("completed", 2)
    finally:
        restarted.stop()


def process_tree(pid: int) -> list[int]:
    """The server's processes: its supervisor, worker and helpers (Linux /proc)."""
    found = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        found.extend(process_tree(int(child)))
    return found


def job_row(database_url: str, job_id: str) -> tuple[str, int, dict[str, Any] | None]:
    query = "SELECT state, attempts, progress FROM job WHERE id = "
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as db:
            row = db.execute(query + "?", (job_id,)).fetchone()
    else:
        with psycopg.connect(database_url, autocommit=True) as connection:
            row = connection.execute(query + "%s", (job_id,)).fetchone()
    assert row is not None
    return row[0], int(row[1]), None if row[2] is None else orjson.loads(row[2])


@pytest.mark.postgres
def test_several_workers_share_jobs_and_search_parameters(tmp_path: Path,
                                                          postgres_url: str) -> None:
    """``--workers 2`` on PostgreSQL: two serving processes, one job queue, one registry."""
    url = postgres_url.rsplit("/", 1)[0] + f"/hygeia_workers_{uuid.uuid4().hex[:8]}"
    server = ServerProcess(url, "--workers", "2", "--files", str(tmp_path))
    try:
        workers = [pid for pid in process_tree(server.process.pid)[1:]
                   if b"hygeia.server.offload.worker" not in
                   Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        parameter = {"resourceType": "SearchParameter", "id": "nick", "status": "active",
                     "url": "http://example.org/SearchParameter/nick", "name": "nick",
                     "description": "Nickname", "code": "nick", "base": ["Patient"],
                     "type": "string", "expression": "Patient.name.given"}
        for resource in (parameter, {"resourceType": "Patient", "id": "w1",
                                     "name": [{"given": ["Maggie"]}]}):
            assert server.client.put(f"{resource['resourceType']}/{resource['id']}",
                                     content=orjson.dumps(resource), headers=FHIR_JSON
                                     ).is_success
        deadline, answered = time.monotonic() + 20, 0
        while answered < 20:  # new connections, so both processes get asked
            strict = httpx.get(f"{server.base}/Patient", params={"nick": "maggie"},
                               headers={"Prefer": "handling=strict"})
            answered = answered + 1 if strict.status_code == 200 else 0
            assert time.monotonic() < deadline, "a worker never learned the new parameter"
        exports = [server.client.get("$export", params={"_type": "Patient"}, headers=KICK_OFF)
                   for _ in range(4)]
        for started in exports:
            done = poll(server.client, started.headers["Content-Location"])
            assert exported_counts(server.client, done.json()) == Counter({"Patient": 1})
    finally:
        server.stop()
        _drop_database(url)


def test_export_then_import_into_another_server(loaded: tuple[ServerProcess, Counter[str]],
                                                tmp_path: Path) -> None:
    """The round trip a migration makes: every exported file imported elsewhere."""
    source, counts = loaded
    done = poll(source.client, source.client.get(
        "$export", headers=KICK_OFF).headers["Content-Location"])
    manifest = done.json()
    target_files = tmp_path / "target-files"
    (target_files / "import").mkdir(parents=True)
    inputs = []
    for item in manifest["output"]:
        name = item["url"].rsplit("/", 1)[1]
        with (target_files / "import" / name).open("wb") as out, \
                source.client.stream("GET", item["url"]) as response:
            for chunk in response.iter_bytes():
                out.write(chunk)
        inputs.append({"name": "input", "part": [
            {"name": "type", "valueCode": item["type"]}, {"name": "url", "valueUri": name}]})
    target = ServerProcess(f"sqlite:///{tmp_path}/target.db", "--files", str(target_files))
    try:
        started = target.client.post("$import", headers={**KICK_OFF, **FHIR_JSON},
                                     content=orjson.dumps({"resourceType": "Parameters",
                                                           "parameter": inputs}))
        assert started.status_code == 202, started.text
        imported = poll(target.client, started.headers["Content-Location"])
        assert imported.status_code == 200
        result = imported.json()
        assert result["error"] == []
        assert sum(item["count"] for item in result["output"]) == sum(counts.values())
        for kind, count in counts.items():
            found = target.client.get(kind, params={"_summary": "count"}).json()["total"]
            assert found == count, kind
    finally:
        target.stop()
