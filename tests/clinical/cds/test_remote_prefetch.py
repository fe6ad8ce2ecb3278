"""Prefetch fetched from the EHR's own FHIR server (``fhirServer``), a real ``hygeia
serve`` here, through the guarded outbound client, with the token the EHR handed over."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hygeia.clinical.cds.mount import CdsMount
from hygeia.clinical.cds.services import built_in
from hygeia.fhir.outcome import FhirError
from hygeia.server import FhirService, OutboundSettings, Settings
from hygeia.store import open_repository
from tests.clinical.cds.test_services import answer, send
from tests.clinical.news2.test_engine import full_set
from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def ehr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(f"sqlite:///{tmp_path_factory.mktemp('ehr')}/ehr.db")
    try:
        yield process
    finally:
        process.stop()


def test_missing_prefetch_is_fetched_from_the_fhir_server(ehr_server: ServerProcess,
                                                          tmp_path: Path) -> None:
    created = ehr_server.client.post("Patient", json={"resourceType": "Patient",
                                                      "birthDate": "1950-01-01"})
    patient = created.json()["id"]
    for vital in full_set(f"Patient/{patient}", "2026-03-01T10:00:00Z", pulse=95):
        assert ehr_server.client.post("Observation", json=vital).status_code == 201
    call = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "fhirServer": ehr_server.base,
            "fhirAuthorization": {"access_token": "opaque", "token_type": "Bearer",
                                  "expires_in": 300, "scope": "patient/*.read",
                                  "subject": "cds"},
            "context": {"userId": "Practitioner/x", "patientId": patient}}
    with open_repository(f"sqlite:///{tmp_path}/cds.db") as repository:
        allowed = FhirService(repository, Settings(outbound=OutboundSettings(
            allow=("127.0.0.1",))))
        mount = CdsMount(allowed, built_in(3600))
        [card] = answer(mount, "/cds-services/news2", call)["cards"]
        assert card["summary"] == "NEWS2 1: low clinical risk"
        closed = CdsMount(FhirService(repository), built_in(3600))  # loopback not allowed
        with pytest.raises(FhirError) as refused:
            send(closed, "POST", "/cds-services/news2", call)
        assert refused.value.status == 412 and "--outbound-allow" in str(refused.value)
