"""Schemathesis, a third-party API fuzzer, against a live server from /fhir/openapi.json:
not one request may get a 5xx.

Bounded for CI (a few types and a few examples per operation: about 15 s per backend on
two cores; not ``--max-time``, which makes schemathesis fuzz until the time is spent).
``benchmarks/schemathesis_full.py`` fuzzes every operation.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

pytest.importorskip("schemathesis")

CI_TYPES = ("Patient", "Observation", "Encounter")
MAX_EXAMPLES = 5
TIMEOUT_SECONDS = 240


def schemathesis_command(base: str, *options: str) -> list[str]:
    """The ``schemathesis run`` command line (4.x) that checks for server errors only."""
    return [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
            "--checks", "not_a_server_error", "--generation-database", "none",
            "--request-timeout", "30", "--no-color", *options]


def test_no_server_error_under_schemathesis(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(database_url)
    try:
        command = schemathesis_command(
            server.base, "--max-examples", str(MAX_EXAMPLES),
            "--include-path-regex", f"^/({'|'.join(CI_TYPES)})(/|$)")
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                             timeout=TIMEOUT_SECONDS)
    finally:
        server.stop()
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert " passed" in run.stdout, report
    assert "Selected: " in run.stdout, report
    shutil.rmtree(tmp_path / "schemathesis-report", ignore_errors=True)
