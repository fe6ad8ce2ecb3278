"""The access log of a real ``hygeia serve`` process: ``--log-format json`` writes one JSON
object per request and line, never a query string (search values are patient data) nor a
header (tokens); and the server's console lines are never wrapped, however long."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import ServerProcess

SECRET_TOKEN = "eyJhbGciOiJub25lIn0.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
PATIENT_NAME = "Zebediah-Quaritch"  # a search value: patient data


def _entries(log: Path, last_path: str) -> list[dict[str, Any]]:
    """The log's lines as JSON, once the last request's is there (each line is written
    just after its answer)."""
    deadline = time.monotonic() + 10
    while f'"{last_path}"' not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return [orjson.loads(line) for line in log.read_text().splitlines()]


def test_json_access_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with log.open("wb") as stdout:
        server = ServerProcess(f"sqlite:///{tmp_path}/log.db", "--access-log",
                               "--log-format", "json", stdout=stdout)
    try:
        bearer = {"Authorization": f"Bearer {SECRET_TOKEN}"}
        assert server.client.get("Patient", params={"name": PATIENT_NAME},
                                 headers=bearer).status_code == 200
        assert server.client.get("Patient/nobody", headers=bearer).status_code == 404
        entries = _entries(log, "/fhir/Patient/nobody")
    finally:
        server.stop()
    text = log.read_text()
    assert PATIENT_NAME not in text and SECRET_TOKEN not in text and "?" not in text
    assert "Bearer" not in text
    search, read = (next(entry for entry in entries if entry["path"] == path)
                    for path in ("/fhir/Patient", "/fhir/Patient/nobody"))
    assert set(search) == {"time", "client", "method", "path", "status", "bytes", "ms"}
    assert (search["method"], search["status"], search["client"]) == ("GET", 200, "127.0.0.1")
    assert search["bytes"] > 0 and search["ms"] >= 0 and search["time"].endswith("+00:00")
    assert read["status"] == 404


def test_text_access_log_is_the_default(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with log.open("wb") as stdout:
        server = ServerProcess(f"sqlite:///{tmp_path}/log.db", "--access-log", stdout=stdout)
    try:
        assert server.client.get("Patient", params={"name": PATIENT_NAME}).status_code == 200
        deadline = time.monotonic() + 10
        while "/fhir/Patient " not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    line = next(line for line in log.read_text().splitlines() if "/fhir/Patient " in line)
    assert '"GET /fhir/Patient HTTP/1.1" 200' in line and PATIENT_NAME not in line


def test_console_lines_are_not_wrapped(tmp_path: Path) -> None:
    folder = tmp_path / ("a-folder-with-a-rather-long-name-" * 4)
    folder.mkdir()
    url = f"sqlite:///{folder}/hygeia.db"
    server = ServerProcess(url)
    server.stop()
    assert server.process.stderr is not None
    lines = server.process.stderr.read().decode().splitlines()
    assert any(line.startswith("Hygeia FHIR R4 server at") and line.endswith(f"{url})")
               for line in lines), lines
    assert any(line.startswith("NO AUTHENTICATION:") and line.endswith("loopback).")
               for line in lines), lines
