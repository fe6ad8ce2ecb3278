"""``hygeia devices list|assign|status`` as a user runs them, on both databases."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hygeia.devices.mqtt.storing import ensure_topic_device
from hygeia.server import FhirService
from hygeia.server.rest import write
from hygeia.store import open_repository
from tests.conftest import BACKENDS, _drop_database

DEVICE = "urn:hygeia:mqtt:device|ward-3/bed-7"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/devices.db"
        return
    url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + \
        f"/hygeia_devices_{uuid.uuid4().hex[:8]}"
    yield url
    _drop_database(url)


@pytest.fixture
def patient(database_url: str) -> str:
    """A database holding a patient and the Device of ward-3/bed-7 with one reading."""
    repository = open_repository(database_url)
    service = FhirService(repository)
    try:
        with service.transaction() as session:
            device = ensure_topic_device(session, "ward-3", "bed-7")
            write.create(session, "Observation", {
                "resourceType": "Observation", "status": "final", "code": {"text": "HR"},
                "device": {"reference": f"Device/{device}"}})
            response = write.create(session, "Patient", {"resourceType": "Patient"})
    finally:
        repository.close()
    assert response.location is not None
    return response.location.split("/")[1]


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_list_shows_each_device_with_its_patient_and_last_reading(
        database_url: str, patient: str) -> None:
    before = hygeia("devices", "list", "--db", database_url)
    assert before.returncode == 0, before.stderr
    lines = before.stdout.splitlines()
    assert lines[0] == "identifier\ttype\tstatus\tpatient\tlast seen"
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows[DEVICE][2:4] == ["active", ""] and rows[DEVICE][4].startswith("20")
    assert rows["urn:hygeia:mqtt:gateway|ward-3"][1] == "MQTT gateway"
    assigned = hygeia("devices", "assign", "--db", database_url, DEVICE, patient)
    assert assigned.returncode == 0, assigned.stderr
    assert f"measures Patient/{patient}: DeviceUseStatement/" in assigned.stdout
    after = hygeia("devices", "list", "--db", database_url).stdout
    assert f"{DEVICE}\tbed-7\tactive\tPatient/{patient}\t" in after
    retired = hygeia("devices", "status", "--db", database_url, DEVICE, "inactive")
    assert retired.returncode == 0 and "is inactive" in retired.stdout
    assert f"{DEVICE}\tbed-7\tinactive\t" in hygeia("devices", "list", "--db",
                                                     database_url).stdout


@pytest.mark.parametrize(("args", "error"), [
    (("assign", "urn:hygeia:mqtt:device|ward-9/none", "p"), "No Device has the identifier"),
    (("assign", "no-pipe", "p"), "write it as system|value"),
    (("assign", DEVICE, "nobody"), "Patient/nobody does not exist"),
    (("assign", DEVICE, "PATIENT", "--start", "yesterday"), "not a FHIR date"),
])
def test_a_mistake_is_one_error_line(database_url: str, patient: str, args: tuple[str, ...],
                                     error: str) -> None:
    args = tuple(patient if arg == "PATIENT" else arg for arg in args)
    result = hygeia("devices", args[0], "--db", database_url, *args[1:])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert error in result.stderr
