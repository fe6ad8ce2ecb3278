"""``GET /fhir/openapi.json`` through a real server: the generated document, as JSON."""

from __future__ import annotations

from tests.conftest import ServerProcess


def test_openapi_document_is_served(server: ServerProcess) -> None:
    response = server.client.get("openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["servers"] == [{"url": server.base}]
    assert "/Patient/{id}" in document["paths"]
    metadata = server.client.get("metadata").json()
    types = {entry["type"] for entry in metadata["rest"][0]["resource"]}
    assert {path.split("/")[1] for path in document["paths"]} >= types
    # gzip like every large answer, and the same bytes the second time (cached)
    again = server.client.get("openapi.json", headers={"Accept-Encoding": "gzip"})
    assert again.headers.get("content-encoding") == "gzip"
    assert again.content == response.content


def test_openapi_document_is_read_only(server: ServerProcess) -> None:
    response = server.client.post("openapi.json", json={"resourceType": "Patient"})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_openapi_document_needs_no_token_as_metadata_needs_none(database_url: str) -> None:
    """Like the CapabilityStatement it is made from, the API description is public."""
    server = ServerProcess(database_url, "--auth")
    try:
        assert server.client.get("openapi.json").status_code == 200
        assert server.client.get("Patient").status_code == 401
    finally:
        server.stop()
