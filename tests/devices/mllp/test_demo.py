"""``hygeia serve --demo --mllp-port N`` prints commands that admit a demo patient, and
they work as printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ServerProcess, free_port


def test_the_demo_commands_admit_a_patient(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stdout.txt"
    with log.open("w") as stdout:
        server = ServerProcess(f"sqlite:///{tmp_path}/demo.db", "--demo", "--mllp-port",
                               str(port), stdout=stdout)
    try:
        lines = log.read_text().splitlines()
        start = next(index for index, line in enumerate(lines) if "over MLLP on" in line)
        commands = [line.strip() for line in lines[start + 1:start + 3]]
        assert commands[1].startswith(f"mllp_send --loose --port {port} ")
        scripts = str(Path(sys.executable).parent)
        sent = subprocess.run(["bash", "-ec", "\n".join(commands)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PATH": f"{scripts}:{os.environ['PATH']}"})
        assert "MSA|AA|DEMO0001" in sent.stdout, sent.stderr
        assert server.client.get("Encounter?identifier=DEMO-V1").json()["total"] == 1
    finally:
        server.stop()


def test_without_the_flag_the_demo_says_how_to_turn_it_on(tmp_path: Path) -> None:
    log = tmp_path / "stdout.txt"
    with log.open("w") as stdout:
        server = ServerProcess(f"sqlite:///{tmp_path}/demo.db", "--demo", stdout=stdout)
    server.stop()
    assert "HL7 v2 over MLLP is off: add --mllp-port 2575" in log.read_text()
