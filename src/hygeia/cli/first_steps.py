"""What ``hygeia serve --demo`` prints so a new user's first request returns data.

A demo is only useful if its first query finds something: the lines name the
demo patients by id and give three ``curl`` commands, built from those ids
and the server's base URL, that each return resources.
"""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.server import FhirRequest, FhirService

SHOWN_PATIENTS = 10


def demo_patients(service: FhirService) -> list[tuple[str, str]]:
    """(id, human name) of the stored Patients, at most :data:`SHOWN_PATIENTS`."""
    response = service.handle(FhirRequest("GET", "Patient", query=[
        ("_count", str(SHOWN_PATIENTS)), ("_elements", "name"), ("_sort", "_id")]))
    bundle = response.resource if response.resource is not None else orjson.loads(
        response.raw or b"{}")
    return [(entry["resource"]["id"], _display_name(entry["resource"]))
            for entry in bundle.get("entry", []) if "resource" in entry]


def first_steps(patients: list[tuple[str, str]], fhir_base: str, auth: bool) -> list[str]:
    """The lines to print: the patients, then three ready-to-paste ``curl`` commands."""
    if not patients:
        return []
    lines = ["Demo patients:"] + [f"  {pid}  {name}" for pid, name in patients]
    if auth:
        return [*lines, "Requests need an access token: see docs/guide/auth.md."]
    pid = patients[0][0]
    return [*lines, "Try:",
            f"  curl -s '{fhir_base}/Patient/{pid}'",
            f"  curl -s '{fhir_base}/Observation?patient={pid}&_sort=-date&_count=5'",
            f"  curl -s '{fhir_base}/Patient/{pid}/$everything?_count=20'"]


def _display_name(patient: dict[str, Any]) -> str:
    for name in patient.get("name", []):
        parts = [*name.get("given", []), name.get("family", "")]
        text = name.get("text") or " ".join(part for part in parts if part)
        if text:
            return str(text)
    return "(no name)"
