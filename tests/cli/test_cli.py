"""The hygeia command: validate and serve's safety checks, run as real processes.

``hygeia load`` has its own file, test_load.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from hygeia.cli.main import is_loopback
from tests.helpers import patient


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args], capture_output=True,
                          text=True, timeout=300)


def test_validate_reports_every_issue(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(patient(birthDate="13/01/1990", gender="x")))
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps(patient()))
    result = hygeia("validate", str(bad), str(good))
    assert result.returncode == 1
    assert "Patient.birthDate" in result.stdout and "Patient.gender" in result.stdout
    assert "2 resources checked, 1 invalid." in result.stdout
    assert hygeia("validate", str(good)).returncode == 0


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True),
                                                ("::1", True), ("0.0.0.0", False),
                                                ("10.0.0.1", False), ("example.org", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_help_has_examples() -> None:
    for command in ("serve", "load", "validate"):
        assert "example:" in hygeia(command, "--help").stdout


def test_serve_demo_loads_demo_patients_once(tmp_path: Path) -> None:
    from tests.conftest import ServerProcess

    db = f"sqlite:///{tmp_path}/demo.db"
    for _ in range(2):  # the second start must not load the demo again
        server = ServerProcess(db, "--demo")
        try:
            assert server.client.get("Patient").json()["total"] == 2
        finally:
            server.stop()
