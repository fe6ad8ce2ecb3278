"""write.update_all: many updates of one type, their current versions read in one go."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.outcome import FhirError
from hygeia.server import FhirService
from hygeia.server.rest import write


def patient(id: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, **extra}


def test_update_all_creates_updates_and_reports_refusals(service: FhirService) -> None:
    with service.transaction() as session:
        write.update(session, "Patient", "u1", patient("u1"))
    with service.transaction() as session:
        results = write.update_all(session, "Patient", [
            patient("u1", gender="female"), patient("u2"), patient("u3", gender="nonsense")])
    first, second, refused = results
    assert not isinstance(first, FhirError) and first.version == 2
    assert not isinstance(second, FhirError) and second.version == 1
    assert isinstance(refused, FhirError)  # invalid: refused, the others written
    with service.reader() as session:
        assert session.current("Patient", "u3") is None
        current = session.current("Patient", "u1")
        assert current is not None and current.version == 2
        assert b"female" in (current.content or b"")
    with service.transaction() as session, pytest.raises(ValueError):
        write.update_all(session, "Patient", [patient("u1"), patient("u1")])
