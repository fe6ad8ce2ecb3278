"""Conformance details of search, read and operations, through a real server (issue 14)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.helpers import patient, unique


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle.get("link", [])
                 if link["relation"] == relation), None)


def _params(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def _outcome_entry(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome")


# --- the self link lists the parameters that were used (search.html) ----------------------

def test_self_link_leaves_out_an_ignored_parameter_and_reports_it(client: httpx.Client) -> None:
    family = f"Self{unique()}"
    for _ in range(3):
        assert client.post("Patient", json=patient(family=family)).status_code == 201
    response = client.get("Patient", params=[("family", family), ("nonsense", "1"),
                                             ("_count", "2")])
    assert response.status_code == 200
    bundle = response.json()
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "match", "outcome"]
    issue = _outcome_entry(bundle)["issue"][0]
    assert issue["expression"] == ["nonsense"] and issue["severity"] == "warning"

    self_params = _params(_link(bundle, "self") or "")
    assert ("family", family) in self_params and ("_count", "2") in self_params
    assert all(name != "nonsense" for name, _ in self_params)

    next_url = _link(bundle, "next")
    assert next_url is not None and all(name != "nonsense" for name, _ in _params(next_url))
    second = client.get(next_url).json()
    assert [e["search"]["mode"] for e in second["entry"]] == ["match"]
    assert _params(_link(second, "self") or "") == _params(next_url)


def test_self_link_keeps_every_used_parameter(client: httpx.Client) -> None:
    family = f"Kept{unique()}"
    assert client.post("Patient", json=patient(family=family)).status_code == 201
    used = [("family", family), ("_summary", "true"), ("_count", "5")]
    bundle = client.get("Patient", params=used).json()
    assert _params(_link(bundle, "self") or "") == used
    assert not any(e["search"]["mode"] == "outcome" for e in bundle["entry"])
