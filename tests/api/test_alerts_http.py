"""Alerts over HTTP, through a real ``hygeia serve`` process: a pillar raises them (the
test pillar tests/api/alerting_pillar.py, from Observations it sees on the change
feed), a client finds them by FHIR search, acknowledges one by updating its Task, and
only the other escalates."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.test_pillars import REPOSITORY, install_metadata
from tests.conftest import BACKENDS, ServerProcess, backend_server

FLAG_STATUS = {  # R4 defines no Flag status search parameter: a server adds it like this
    "resourceType": "SearchParameter", "url": "urn:example:SearchParameter/Flag-status",
    "name": "FlagStatus", "status": "active", "description": "Flag.status",
    "code": "status", "base": ["Flag"], "type": "token", "expression": "Flag.status"}


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path,
           tmp_path_factory: pytest.TempPathFactory,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    site = tmp_path / "site"
    install_metadata(site, "tests.api.alerting_pillar:PILLAR")
    path = [str(site), str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    with backend_server(request, tmp_path_factory, "alerts") as process:
        yield process


def until(check: Callable[[], Any], seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not seen within {seconds} s")


def alarm(patient: str, name: str, escalate_after: float) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "identifier": [{"system": "urn:example:alarms", "value": name}],
            "code": {"coding": [{"system": "urn:example:alarm", "code": "in-alarm"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "valueQuantity": {"value": escalate_after, "unit": "s"}}


def entries(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    answer = client.get(query)
    assert answer.status_code == 200, answer.text
    return [entry["resource"] for entry in answer.json().get("entry", [])]


def test_an_alert_is_found_acknowledged_and_not_escalated(server: ServerProcess) -> None:
    client = server.client
    assert client.post("SearchParameter", json=FLAG_STATUS).status_code == 201
    patient = client.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    nurse = f"Practitioner/nurse-{uuid.uuid4().hex[:8]}"
    assert client.post("CareTeam", json={
        "resourceType": "CareTeam", "status": "active",
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": nurse}}]}).status_code == 201
    for name in ("acknowledged", "ignored"):
        assert client.post("Observation", json=alarm(patient, name, 3.0)).status_code == 201

    flags = until(lambda: len(found := entries(
        client, f"Flag?patient={patient}&status=active")) == 2 and found)
    assert {flag["identifier"][0]["value"] for flag in flags} == \
        {"test-alarm|acknowledged", "test-alarm|ignored"}
    told = entries(client, f"Communication?recipient={nurse}")
    assert len(told) == 2 and all(c["category"][0]["coding"][0]["code"] == "alert"
                                  for c in told)

    # the nurse acknowledges one alert by accepting its Task (a plain update)
    task = entries(client, "Task?identifier=urn:hygeia:alert|test-alarm%5C%7Cacknowledged")[0]
    assert task["status"] == "requested" and task["owner"]["reference"].startswith("CareTeam/")
    accepted = client.put(f"Task/{task['id']}", json={**task, "status": "accepted",
                                                      "owner": {"reference": nurse}})
    assert accepted.status_code == 200, accepted.text

    # the other escalates on time; the acknowledged one never does
    escalated = until(lambda: [c for c in entries(client, f"Communication?patient={patient}")
                               if c["identifier"][0]["value"] == "test-alarm|ignored#1"])
    assert escalated[0]["priority"] == "asap"
    time.sleep(1.0)
    values = sorted(c["identifier"][0]["value"]
                    for c in entries(client, f"Communication?patient={patient}"))
    assert values == ["test-alarm|acknowledged#0", "test-alarm|ignored#0",
                      "test-alarm|ignored#1"]
    assert client.get(f"Task/{task['id']}").json()["priority"] == "urgent"

    # the condition ends: the Flag goes inactive, the acknowledged Task is completed
    normal = {**alarm(patient, "acknowledged", 3.0),
              "interpretation": [{"coding": [{"code": "N"}]}]}
    assert client.post("Observation", json=normal).status_code == 201
    until(lambda: len(entries(client, f"Flag?patient={patient}&status=inactive")) == 1)
    assert client.get(f"Task/{task['id']}").json()["status"] == "completed"
