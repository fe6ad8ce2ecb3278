"""``hygeia serve --demo --mqtt-url``: the mosquitto_pub line it prints works as pasted."""

from __future__ import annotations

import json
import shlex
import subprocess
import uuid
from pathlib import Path

from tests.conftest import ServerProcess
from tests.devices.mqtt.broker import eventually, forget_session
from tests.devices.mqtt.conftest import mqtt_flags


def test_the_demo_prints_a_publish_line_and_searches_that_find_the_reading(
        tmp_path: Path) -> None:
    client_id = f"hygeia-test-{uuid.uuid4().hex[:12]}"
    server = ServerProcess(f"sqlite:///{tmp_path}/demo.db", "--demo", *mqtt_flags(client_id),
                           stdout=subprocess.PIPE)
    try:
        assert server.process.stdout is not None
        lines: list[str] = []
        while not lines or "Device?identifier=" not in lines[-1]:
            line = server.process.stdout.readline().decode()
            assert line, f"the server's output ended early: {lines}"
            lines.append(line.strip())
        publish, by_device, by_identifier = lines[-3:]
        assert publish.startswith("mosquitto_pub ")
        subprocess.run(shlex.split(publish), check=True, timeout=10)

        def found(line: str) -> list[object]:
            answer = subprocess.run(shlex.split(line), capture_output=True, timeout=30,
                                    check=True)
            return list(json.loads(answer.stdout).get("entry", []))

        eventually(lambda: found(by_device))
        assert len(found(by_identifier)) == 1
    finally:
        server.stop()
        forget_session(client_id)
