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


# --- a read honours _summary and _elements; Accept fhirVersion; If-Modified-Since ---------

SUBSETTED = "SUBSETTED"


def _observation(client: httpx.Client) -> dict[str, Any]:
    observation = {"resourceType": "Observation", "status": "final",
                   "text": {"status": "generated", "div": "<div>reading</div>"},
                   "code": {"text": "weight"}, "note": [{"text": "after lunch"}],
                   "valueQuantity": {"value": 72, "unit": "kg"}}
    response = client.post("Observation", json=observation)
    assert response.status_code == 201
    created: dict[str, Any] = response.json()
    return created


def _tags(resource: dict[str, Any]) -> list[str]:
    return [tag["code"] for tag in resource.get("meta", {}).get("tag", [])]


def test_read_honours_elements_and_summary(client: httpx.Client) -> None:
    created = _observation(client)
    url = f"Observation/{created['id']}"

    elements = client.get(url, params={"_elements": "value"})
    assert elements.status_code == 200 and elements.headers["ETag"] == 'W/"1"'
    body = elements.json()
    assert set(body) == {"resourceType", "id", "meta", "valueQuantity"}
    assert _tags(body) == [SUBSETTED]

    summary = client.get(url, params={"_summary": "true"}).json()
    assert "note" not in summary and "text" not in summary and "code" in summary
    assert _tags(summary) == [SUBSETTED]
    data = client.get(url, params={"_summary": "data"}).json()
    assert "text" not in data and data["note"] == [{"text": "after lunch"}]

    whole = client.get(url, params={"_summary": "false"}).json()
    assert whole == client.get(url).json() and _tags(whole) == []

    vread = client.get(f"{url}/_history/1", params={"_elements": "code"}).json()
    assert set(vread) == {"resourceType", "id", "meta", "code"} and _tags(vread) == [SUBSETTED]


def test_read_refuses_summary_count(client: httpx.Client) -> None:
    created = _observation(client)
    response = client.get(f"Observation/{created['id']}", params={"_summary": "count"})
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["_summary"] and "read" in issue["diagnostics"]


def test_accept_with_another_fhir_version_is_406(client: httpx.Client) -> None:
    created = _observation(client)
    url = f"Observation/{created['id']}"
    for accept in ("application/fhir+json; fhirVersion=3.0",
                   "application/fhir+json;fhirVersion=5.0, application/json;fhirVersion=1.0"):
        response = client.get(url, headers={"Accept": accept})
        assert response.status_code == 406, accept
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == ["Accept"]
        assert "R4" in outcome["issue"][0]["diagnostics"]
    for accept in ("application/fhir+json; fhirVersion=4.0",
                   "application/fhir+json; fhirVersion=4.0.1",
                   "application/fhir+json; fhirVersion=3.0, application/fhir+json"):
        assert client.get(url, headers={"Accept": accept}).status_code == 200, accept
    assert client.get("Observation", headers={
        "Accept": "application/fhir+json; fhirVersion=3.0"}).status_code == 406


def test_conditional_read_with_if_modified_since(client: httpx.Client) -> None:
    created = _observation(client)
    url = f"Observation/{created['id']}"
    last_modified = client.get(url).headers["Last-Modified"]

    unchanged = client.get(url, headers={"If-Modified-Since": last_modified})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["ETag"] == 'W/"1"'
    assert client.get(url, headers={
        "If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": "yesterday"}).status_code == 200
    # If-None-Match decides when both are sent (RFC 9110 13.1.3)
    assert client.get(url, headers={"If-Modified-Since": last_modified,
                                    "If-None-Match": 'W/"7"'}).status_code == 200

    changed = {**created, "status": "amended"}
    assert client.put(url, json=changed).status_code == 200
    assert client.get(url, headers={
        "If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}).json()["status"] == "amended"


# --- an unknown operation is named as such, not taken for an id ---------------------------

def test_unknown_operations_are_named_in_a_404(client: httpx.Client) -> None:
    created = client.post("Patient", json=patient(family=f"Op{unique()}")).json()
    cases = [("GET", "Observation/$lastn", "$lastn is not supported on Observation"),
             ("POST", "ValueSet/$expand", "$expand is not supported on ValueSet"),
             ("GET", f"Patient/{created['id']}/$foo", "$foo is not supported on Patient/[id]"),
             ("GET", "$bar", "$bar is not supported on [base]"),
             ("GET", "Patient/$everything", "It is offered on Patient/[id]")]
    for method, path, sentence in cases:
        response = client.request(method, path, json={"resourceType": "Parameters"}
                                  if method == "POST" else None)
        assert response.status_code == 404, path
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        issue = outcome["issue"][0]
        assert issue["code"] == "not-supported", path
        assert sentence in issue["diagnostics"] and "valid FHIR id" not in issue["diagnostics"]


# --- a Subscription the server cannot honour is refused, not stored -----------------------

def _subscription(criteria: str) -> dict[str, Any]:
    """An email channel: not one this server sends (server/subscriptions/spec.py)."""
    return {"resourceType": "Subscription", "status": "requested", "reason": "test",
            "criteria": criteria,
            "channel": {"type": "email", "endpoint": "mailto:someone@example.org",
                        "payload": "application/fhir+json"}}


def _refused(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = " ".join(issue["diagnostics"] for issue in outcome["issue"])
    assert "Channel type 'email' is not supported" in text
    assert "channel.type" in str([i.get("expression") for i in outcome["issue"]])
    return text


def _stored_subscriptions(client: httpx.Client, marker: str) -> int:
    bundle = client.get("Subscription", params={"criteria": f"Observation?code={marker}",
                                                 "_total": "accurate"}).json()
    return int(bundle["total"])


def test_subscription_is_refused_on_every_write_path(client: httpx.Client) -> None:
    marker = unique()
    subscription = _subscription(f"Observation?code={marker}")
    _refused(client.post("Subscription", json=subscription))
    _refused(client.put(f"Subscription/s{marker[:20]}",
                        json={**subscription, "id": f"s{marker[:20]}"}))
    _refused(client.put("Subscription", params={"criteria": f"Observation?code={marker}"},
                        json=subscription))
    for kind in ("transaction", "batch"):
        response = client.post("", json={"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": patient(family=f"Sub{marker}"),
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": subscription, "request": {"method": "POST", "url": "Subscription"}}]})
        if kind == "transaction":
            assert "Bundle.entry[1]" in str(response.json()["issue"][0].get("expression"))
            _refused(response)
        else:
            assert response.status_code == 200
            outcome = response.json()["entry"][1]["response"]
            assert outcome["status"].startswith("422")
            assert "is not supported" in str(outcome["outcome"])
    assert _stored_subscriptions(client, marker) == 0
    # the transaction stored nothing, the batch its Patient entry
    families = client.get("Patient", params={"family": f"Sub{marker}"}).json()
    assert len(families.get("entry", [])) == 1


def test_capability_statement_matches_what_is_refused_and_supported(client: httpx.Client) -> None:
    statement = client.get("metadata").json()
    entries = {entry["type"]: entry for entry in statement["rest"][0]["resource"]}
    subscription = {i["code"] for i in entries["Subscription"]["interaction"]}
    assert {"read", "delete", "search-type", "create", "update", "patch"} <= subscription
    assert {"create", "update", "patch"} <= {i["code"] for i in entries["Patient"]["interaction"]}
    assert entries["Patient"]["conditionalRead"] == "full-support"
