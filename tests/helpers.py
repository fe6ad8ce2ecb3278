"""Small builders shared by tests."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path
from typing import Any

import orjson

from hygeia.server import FhirRequest, FhirResponse, FhirService
from hygeia.server.jobs.run import JobRun
from hygeia.store.plain_sql import writing

FIXTURES = Path(__file__).parent / "fixtures"


def patient(identifier: str | None = None, family: str = "Doe", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if identifier is not None:
        resource["identifier"] = [{"system": "urn:test", "value": identifier}]
    resource.update(extra)
    return resource


def unique() -> str:
    return uuid.uuid4().hex


def call(service: FhirService, method: str, path: str, body: Any = None,
         query: list[tuple[str, str]] | None = None, **kwargs: Any) -> FhirResponse:
    """One request to the service; ``query`` adds parameters to those in ``path``."""
    path, _, text = path.partition("?")
    from urllib.parse import parse_qsl

    params = parse_qsl(text, keep_blank_values=True) + list(query or [])
    request = FhirRequest(method, path, params, body, "http://test/fhir/", **kwargs)
    return service.handle(request)


def body(response: FhirResponse) -> dict[str, Any]:
    data = response.body_dict()
    assert data is not None
    return orjson.loads(orjson.dumps(data))


def synthea_bundle(name: str = "001") -> dict[str, Any]:
    path = next((FIXTURES / "synthea").glob(f"{name}-*.json.gz"))
    data: dict[str, Any] = orjson.loads(gzip.decompress(path.read_bytes()))
    return data


class CrashAfter(JobRun):
    """A job context that stops the job (as a kill would) at its n-th checkpoint,
    before saving it: the tests of resuming jobs crash at every checkpoint in turn."""

    def __init__(self, *args: Any, crash_at: int) -> None:
        super().__init__(*args)
        self.remaining = crash_at

    def checkpoint(self, progress: dict[str, Any]) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            raise KeyboardInterrupt("simulated crash")
        super().checkpoint(progress)


def expire_lease(service: FhirService, job_id: str) -> None:
    """Make a job claimable now, as the lease (or a retry delay) running out would."""
    with writing(service.jobs.repository) as session:
        session.execute("UPDATE job SET lease_until = 0 WHERE id = ?", (job_id,))
