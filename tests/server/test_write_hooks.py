"""A write hook sees every version stored, on every write path, inside the write's
transaction: what it writes commits with the write, what it raises rolls it back."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest

from hygeia.fhir.outcome import FhirError, Unprocessable
from hygeia.server import FhirService
from hygeia.server.loading.loader import Loader, LoadError
from hygeia.store import Session, StoredVersion
from tests.helpers import body, call, patient


@dataclass
class Recorder:
    """Notes each Observation version; refuses one whose status is 'entered-in-error'
    and counts the others in a Basic resource it writes in the same transaction."""

    types: frozenset[str] | None = frozenset({"Observation"})
    seen: list[tuple[str, int, bool]] = field(default_factory=list)

    def written(self, session: Session, version: StoredVersion) -> None:
        self.seen.append((version.id, version.version, version.deleted))
        content = orjson.loads(version.content) if version.content else {}
        if content.get("status") == "entered-in-error":
            raise Unprocessable("This hook refuses entered-in-error.", expression="status")


def observation(status: str = "final") -> dict[str, object]:
    return {"resourceType": "Observation", "status": status, "code": {"text": "hooked"}}


@pytest.fixture
def recorder(service: FhirService) -> Recorder:
    return service.write_hooks.register(Recorder())  # type: ignore[return-value]


def test_rest_writes_reach_the_hook(service: FhirService, recorder: Recorder) -> None:
    created = body(call(service, "POST", "Observation", observation()))
    call(service, "PUT", f"Observation/{created['id']}", {**created, "status": "amended"})
    call(service, "DELETE", f"Observation/{created['id']}")
    call(service, "POST", "Patient", patient())  # a type the hook does not want
    assert recorder.seen == [(created["id"], 1, False), (created["id"], 2, False),
                             (created["id"], 3, True)]


def test_a_hook_that_raises_refuses_the_write(service: FhirService, recorder: Recorder) -> None:
    with pytest.raises(FhirError) as refused:
        call(service, "POST", "Observation", observation("entered-in-error"))
    assert refused.value.status == 422
    found = body(call(service, "GET", "Observation", query=[("code:text", "hooked")]))
    assert found["total"] == 0


def test_transaction_entries_reach_the_hook_and_roll_back_together(
        service: FhirService, recorder: Recorder) -> None:
    def transaction(*statuses: str) -> dict[str, object]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation(status), "request": {"method": "POST", "url": "Observation"}}
            for status in statuses]}

    assert call(service, "POST", "", transaction("final", "preliminary")).status == 200
    assert len(recorder.seen) == 2
    with pytest.raises(FhirError):
        call(service, "POST", "", transaction("final", "entered-in-error"))
    found = body(call(service, "GET", "Observation", query=[("code:text", "hooked")]))
    assert found["total"] == 2  # the refused transaction stored neither entry


def test_the_bulk_loader_reaches_the_hook(service: FhirService, recorder: Recorder) -> None:
    lines = [orjson.dumps({**observation(), "id": f"loaded-{n}"}) for n in range(3)]
    errors: list[LoadError] = []
    with Loader(service, workers=0, upsert=False, on_error=errors.append) as loader:
        loader.load_lines("hooked.ndjson", lines)
    assert not errors
    assert sorted(recorder.seen) == [(f"loaded-{n}", 1, False) for n in range(3)]


def test_search_parameters_take_effect_through_their_hook(service: FhirService) -> None:
    """The core's own SearchParameter registration is a write hook (so it also runs for
    SearchParameters loaded by `hygeia load`)."""
    parameter = {"resourceType": "SearchParameter", "url": "urn:test:hooked-code",
                 "name": "hooked", "status": "active", "code": "hooked", "base": ["Observation"],
                 "type": "string", "expression": "Observation.code.text",
                 "description": "test"}
    lines = [orjson.dumps({**parameter, "id": "hooked"})]
    with Loader(service, workers=0, upsert=False, on_error=lambda error: None) as loader:
        loader.load_lines("parameters.ndjson", lines)
    assert service.registry.by_url("urn:test:hooked-code") is not None
    broken = {**parameter, "url": "urn:test:broken", "code": "broken", "expression": ""}
    with pytest.raises(FhirError) as refused:
        call(service, "POST", "SearchParameter", broken)
    assert refused.value.status == 422
    assert service.registry.by_url("urn:test:broken") is None
