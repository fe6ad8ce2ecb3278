"""Fixture messages and FHIR reads for the ORU^R01 tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import orjson

from hygeia.devices.hl7v2.handling import Handled, Handler, Received
from hygeia.devices.hl7v2.oru import HANDLES
from hygeia.server import FhirRequest, FhirService

FIXTURES = Path(__file__).parent.parent.parent / "fixtures" / "hl7v2"


def message_text(name: str) -> str:
    """A fixture file as HL7 ER7 (segments separated by carriage returns)."""
    lines = (FIXTURES / name).read_text().splitlines()
    return "\r".join(line for line in lines if line) + "\r"


def received(raw: str) -> Received:
    message = hl7.parse(raw)
    msh = message.segment("MSH")
    return Received(message=message, raw=raw,
                    sender=f"{msh.extract_field(1, 3, 1, 1, 1)}|{msh.extract_field(1, 4, 1, 1, 1)}",
                    control_id=str(msh.extract_field(1, 10, 1, 1, 1)),
                    message_type=f"{msh.extract_field(1, 9, 1, 1, 1)}^"
                                 f"{msh.extract_field(1, 9, 1, 2, 1)}",
                    received_at=datetime.now(UTC))


def process(service: FhirService, raw: str, handler: Handler | None = None) -> Handled:
    """Handle a message in one committed write transaction, as the MLLP listener does."""
    with service.transaction() as session:
        return (handler or HANDLES["ORU^R01"])(received(raw), session)


def search(service: FhirService, path: str, **query: str) -> list[dict[str, Any]]:
    """The resources a FHIR search through the service returns (all pages' worth)."""
    response = service.handle(FhirRequest("GET", path, query=[*query.items(), ("_count", "200")]))
    assert response.status == 200, response.body_dict()
    bundle = orjson.loads(orjson.dumps(response.body_dict()))  # entries may be raw fragments
    return [entry["resource"] for entry in bundle.get("entry", [])
            if entry.get("search", {}).get("mode", "match") == "match"]


def read(service: FhirService, reference: str) -> dict[str, Any]:
    response = service.handle(FhirRequest("GET", reference))
    assert response.status == 200, reference
    body = response.body_dict()
    assert body is not None
    return body


def one(resources: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(resources) == 1, [r.get("id") for r in resources]
    return resources[0]
