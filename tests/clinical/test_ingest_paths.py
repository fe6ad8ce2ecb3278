"""Vital signs that arrive over MLLP and MQTT (the devices pillar, when installed beside
this one), or through the bulk loader (``hygeia load``), reach the NEWS2 engine through
the change feed like any other write."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import hl7.client
import pytest

from tests.clinical.news2.test_engine import NEWS2, full_set
from tests.conftest import BACKENDS, ServerProcess, backend_server, free_port

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


@pytest.fixture(params=BACKENDS)
def load_server(clinical_pillar: None, request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with backend_server(request, tmp_path_factory, "clinload") as process:
        yield process


def test_vitals_from_hygeia_load_are_scored(load_server: ServerProcess, tmp_path: Path) -> None:
    patient = load_server.client.post("Patient", json={"resourceType": "Patient",
                                                       "birthDate": "1950-01-01"}).json()["id"]
    vitals = full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=26, spo2=90,
                      pulse=135)
    ids = [f"loaded-{uuid.uuid4().hex[:12]}" for _ in vitals]
    path = tmp_path / "vitals.ndjson"
    path.write_text("".join(json.dumps({**vital, "id": id}) + "\n"
                            for vital, id in zip(vitals, ids, strict=True)))
    # the bulk loader writes into the running server's database, as an operator would
    loaded = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--quiet",
                             "--db", load_server.db_url, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    deadline = time.monotonic() + 30
    scores: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not scores:
        bundle = load_server.client.get(f"Observation?patient={patient}&code={NEWS2}").json()
        scores = [entry["resource"] for entry in bundle.get("entry", [])
                  if entry["resource"]["status"] == "final"]
        time.sleep(0.2)
    [score] = scores
    assert score["valueInteger"] == 9
    assert sorted(ref["reference"] for ref in score["derivedFrom"]) == \
        sorted(f"Observation/{id}" for id in ids)
    flags = load_server.client.get(f"Flag?patient={patient}").json().get("entry", [])
    assert [entry["resource"]["identifier"][0]["value"] for entry in flags] == \
        [f"news2-high|Patient/{patient}"]
