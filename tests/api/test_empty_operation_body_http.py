"""An operation POSTed without a body runs with no parameters, as the guides show
(``curl -X POST .../Patient/$reindex``); a create without a body is still refused."""

from __future__ import annotations

import httpx

ASYNC = {"Prefer": "respond-async"}


def test_reindex_with_an_empty_body_is_accepted(client: httpx.Client) -> None:
    response = client.post("Patient/$reindex", headers=ASYNC)
    assert response.status_code == 202, response.text
    assert "/_job/" in response.headers["Content-Location"]


def test_export_with_an_empty_body_is_accepted(client: httpx.Client) -> None:
    response = client.post("$export", headers=ASYNC)
    assert response.status_code == 202, response.text
    assert "/_job/" in response.headers["Content-Location"]


def test_a_create_without_a_body_is_still_refused(client: httpx.Client) -> None:
    response = client.post("Patient", headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"] == "POST needs a request body."
