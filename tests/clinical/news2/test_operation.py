"""``Patient/{id}/$news2`` on SQLite and PostgreSQL, and ``hygeia clinical rescore``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hygeia.clinical.news2.operation import news2_operation
from hygeia.fhir.outcome import FhirError
from hygeia.server import FhirService
from hygeia.store import open_repository
from tests.clinical.news2.test_engine import NEWS2, full_set
from tests.helpers import body, call


@pytest.fixture
def with_news2(service: FhirService) -> FhirService:
    service.add_operation(news2_operation())
    return service


def created(service: FhirService, resource: dict[str, object]) -> str:
    response = call(service, "POST", str(resource["resourceType"]), resource)
    assert response.status == 201
    return str(body(response)["id"])


def test_news2_recomputes_on_demand(with_news2: FhirService) -> None:
    patient = created(with_news2, {"resourceType": "Patient", "birthDate": "1950-01-01"})
    for vital in full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", pulse=112):
        created(with_news2, vital)
    # no engine runs here: the score exists only once asked for
    assert "entry" not in body(call(with_news2, "GET", f"Observation?patient={patient}"
                                                       f"&code={NEWS2}"))
    response = call(with_news2, "POST", f"Patient/{patient}/$news2")
    assert response.status == 200
    score = body(response)
    assert (score["valueInteger"], score["status"]) == (2, "final")
    again = body(call(with_news2, "POST", f"Patient/{patient}/$news2"))
    assert again["id"] == score["id"] and again["meta"]["versionId"] == \
        score["meta"]["versionId"]  # nothing changed: no new version


def test_news2_says_why_not(with_news2: FhirService) -> None:
    with pytest.raises(FhirError) as unknown:
        call(with_news2, "POST", "Patient/nobody/$news2")
    assert unknown.value.status == 404
    patient = created(with_news2, {"resourceType": "Patient"})
    with pytest.raises(FhirError) as empty:
        call(with_news2, "POST", f"Patient/{patient}/$news2")
    assert empty.value.status == 422 and "no vital signs" in str(empty.value)


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_rescore_command(clinical_pillar: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    with open_repository(url, migrate=True) as repository:
        service = FhirService(repository)
        patient = created(service, {"resourceType": "Patient", "birthDate": "1950-01-01"})
        for vital in full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", respiration=25):
            created(service, vital)
    # the CLI knows every installed pillar's tables (imaging's too), this process may not
    migrated = hygeia("db", "migrate", "--db", url)
    assert migrated.returncode == 0, migrated.stderr
    done = hygeia("clinical", "rescore", "--patient", patient, "--db", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Patient/{patient}: NEWS2 3 (low-medium) Observation/")
    missing = hygeia("clinical", "rescore", "--patient", "nobody", "--db", url)
    assert (missing.returncode, missing.stderr) == (2, "error: Patient/nobody is not known.\n")
