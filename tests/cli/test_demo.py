"""``hygeia serve --demo`` prints the demo patients and three curl lines that return data."""

from __future__ import annotations

import json
import shlex
import subprocess
from typing import IO

from tests.api.conftest import database_url  # noqa: F401 - the fixture, on both databases
from tests.conftest import ServerProcess

DEMO_PATIENTS = 2  # the packaged Synthea patients (src/hygeia/cli/demo)


def printed_introduction(stdout: IO[bytes]) -> list[str]:
    """The lines up to and including the third curl line (printed before serving)."""
    lines: list[str] = []
    while sum(line.startswith("curl ") for line in lines) < 3:
        line = stdout.readline().decode()
        assert line, f"the server's output ended early: {lines}"
        lines.append(line.strip())
    return lines


def test_demo_prints_patients_and_curl_lines_that_return_data(
        database_url: str) -> None:  # noqa: F811
    server = ServerProcess(database_url, "--demo", stdout=subprocess.PIPE)
    try:
        assert server.process.stdout is not None
        lines = printed_introduction(server.process.stdout)
        listed = lines[lines.index("Demo patients:") + 1: lines.index("Try:")]
        stored = {entry["resource"]["id"] for entry in
                  server.client.get("Patient", params={"_count": "50"}).json()["entry"]}
        assert {line.split()[0] for line in listed} == stored and len(stored) == DEMO_PATIENTS
        assert all(len(line.split()) >= 3 for line in listed)  # id, given and family names
        for line in (line for line in lines if line.startswith("curl ")):
            command = shlex.split(line)
            assert command[:2] == ["curl", "-s"] and command[2].startswith(server.base)
            answer = subprocess.run(command, capture_output=True, timeout=30, check=True)
            body = json.loads(answer.stdout)
            if body["resourceType"] == "Bundle":
                assert body.get("entry"), (line, body)
            else:
                assert body["resourceType"] == "Patient", (line, body)
    finally:
        server.stop()
