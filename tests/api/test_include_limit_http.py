"""_include/_revinclude results are bounded per page (a tiny query could name a whole database)."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerProcess
from tests.helpers import patient


def _observations(server: ServerProcess, patient_id: str, count: int) -> None:
    for index in range(count):
        observation = {"resourceType": "Observation", "status": "final",
                       "code": {"text": f"reading {index}"},
                       "subject": {"reference": f"Patient/{patient_id}"}}
        assert server.client.post("Observation", json=observation).status_code == 201


def _revinclude(server: ServerProcess, patient_id: str) -> dict[str, Any]:
    response = server.client.get("Patient", params={
        "_id": patient_id, "_revinclude": "Observation:subject"})
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def _modes(bundle: dict[str, Any]) -> list[str]:
    return sorted(entry["search"]["mode"] for entry in bundle["entry"])


def test_included_resources_stop_at_the_limit_with_a_warning(database_url: str) -> None:
    server = ServerProcess(database_url, "--max-included", "3")
    try:
        few = server.client.post("Patient", json=patient(family="Few")).json()["id"]
        many = server.client.post("Patient", json=patient(family="Many")).json()["id"]
        _observations(server, few, 3)
        _observations(server, many, 5)

        assert _modes(_revinclude(server, few)) == ["include"] * 3 + ["match"]

        bundle = _revinclude(server, many)
        assert _modes(bundle) == ["include"] * 3 + ["match", "outcome"]
        outcome = next(e["resource"] for e in bundle["entry"]
                       if e["search"]["mode"] == "outcome")
        issue = outcome["issue"][0]
        assert issue["severity"] == "warning" and issue["code"] == "too-costly"
        assert "first 3 included" in issue["diagnostics"]
    finally:
        server.stop()
