"""Vital signs that arrive over MLLP and MQTT (the devices pillar, when installed beside
this one) reach the NEWS2 engine through the change feed like any other write."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import hl7.client
import pytest

from tests.clinical.news2.test_engine import NEWS2, full_set
from tests.conftest import ServerProcess, free_port

ORU = "\r".join([
    "MSH|^~\\&|MONITOR^WARD|HOSP|HYGEIA|HOSP|20260301100000+0000||ORU^R01^ORU_R01|V-{n}|P|2.6"
    "|||NE|AL",
    "PID|||MRN-{n}^^^HOSP^MR||Vitals^Vera||19500101|F",
    "OBR|1|ORD-{n}^WARD||85353-1^Vital signs panel^LN|||20260301100000+0000",
    "OBX|1|NM|9279-1^Respiratory rate^LN||24|/min^/min^UCUM|||||F|||20260301100000+0000",
    "OBX|2|NM|59408-5^SpO2^LN||94|%^%^UCUM|||||F|||20260301100000+0000",
    "OBX|3|NM|8480-6^Systolic blood pressure^LN||105|mm[Hg]^mm[Hg]^UCUM|||||F|||"
    "20260301100000+0000",
    "OBX|4|NM|8867-4^Heart rate^LN||112|/min^/min^UCUM|||||F|||20260301100000+0000",
    "OBX|5|NM|8310-5^Body temperature^LN||38.3|Cel^Cel^UCUM|||||F|||20260301100000+0000",
    "OBX|6|CWE|67775-7^Level of responsiveness^LN||248234008^Mentally alert^SCT||||||F|||"
    "20260301100000+0000",
]) + "\r"


@pytest.fixture
def server(clinical_pillar: None, tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    if not any(entry.name == "devices" for entry in entry_points(group="hygeia.pillars")):
        pytest.skip("the devices pillar is not installed")
    port = free_port()
    process = ServerProcess(f"sqlite:///{tmp_path}/ingest.db", "--mllp-port", str(port))
    try:
        yield process, port
    finally:
        process.stop()


def test_vitals_over_mllp_are_scored(server: tuple[ServerProcess, int]) -> None:
    process, port = server
    with hl7.client.MLLPClient("127.0.0.1", port) as client:
        acknowledgement = client.send_message(ORU.format(n="7001"))
    assert b"MSA|AA" in acknowledgement
    deadline = time.monotonic() + 20
    scores: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not scores:
        bundle = process.client.get(f"Observation?code={NEWS2}").json()
        scores = [entry["resource"] for entry in bundle.get("entry", [])
                  if entry["resource"]["status"] == "final"]
        time.sleep(0.2)
    [score] = scores
    assert score["valueInteger"] == 7
    assert score["interpretation"][0]["coding"][0]["code"] == "high"
    assert len(score["derivedFrom"]) == 6


@pytest.fixture
def mqtt_server(clinical_pillar: None, tmp_path: Path) -> Iterator[ServerProcess]:
    if not any(entry.name == "devices" for entry in entry_points(group="hygeia.pillars")):
        pytest.skip("the devices pillar is not installed")
    process = ServerProcess(f"sqlite:///{tmp_path}/mqtt.db", "--mqtt-url",
                            "mqtt://127.0.0.1:1883")
    try:
        yield process
    finally:
        process.stop()


def test_vitals_over_mqtt_are_scored(mqtt_server: ServerProcess) -> None:
    patient = mqtt_server.client.post("Patient", json={"resourceType": "Patient",
                                                       "birthDate": "1950-01-01"}).json()["id"]
    gateway = f"ward-{uuid.uuid4().hex[:12]}"
    readings = full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=21)
    deadline = time.monotonic() + 30
    scores: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not scores:
        for index, reading in enumerate(readings):  # the same message again stores nothing
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t",
                            f"hygeia/{gateway}/monitor-{index}/obs", "-m", json.dumps(reading)],
                           check=True, timeout=10)
        time.sleep(0.5)
        bundle = mqtt_server.client.get(f"Observation?patient={patient}&code={NEWS2}").json()
        scores = [entry["resource"] for entry in bundle.get("entry", [])
                  if entry["resource"]["status"] == "final"]
    [score] = scores
    assert score["valueInteger"] == 2 and len(score["derivedFrom"]) == 6
