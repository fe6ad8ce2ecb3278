"""The FHIR REST API over real HTTP against a real server process, on both backends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson

from tests.conftest import ServerProcess
from tests.helpers import patient, synthea_bundle, unique

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def create(client: httpx.Client, resource: dict, **headers: str) -> httpx.Response:
    return client.post(resource["resourceType"], content=orjson.dumps(resource),
                       headers={**FHIR_JSON, **headers})


def assert_outcome(response: httpx.Response, status: int, text: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(text in issue["diagnostics"] for issue in outcome["issue"]), outcome
    return outcome


def test_metadata(client: httpx.Client) -> None:
    response = client.get("metadata")
    assert response.status_code == 200
    assert response.json()["fhirVersion"] == "4.0.1"


def test_create_read_headers(client: httpx.Client, server: ServerProcess) -> None:
    response = create(client, patient(family="Http"))
    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == \
        f"{server.base}/Patient/{created['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith("GMT")
    read = client.get(f"Patient/{created['id']}")
    assert read.json() == created
    assert read.headers["etag"] == 'W/"1"'
    assert client.get(f"Patient/{created['id']}",
                      headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_prefer_return(client: httpx.Client) -> None:
    minimal = create(client, patient(), Prefer="return=minimal")
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    outcome = create(client, patient(), Prefer="return=OperationOutcome")
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_update_if_match_and_delete(client: httpx.Client) -> None:
    created = create(client, patient()).json()
    url = f"Patient/{created['id']}"
    ok = client.put(url, content=orjson.dumps(created), headers={**FHIR_JSON,
                                                                 "If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    stale = client.put(url, content=orjson.dumps(created), headers={**FHIR_JSON,
                                                                    "If-Match": 'W/"1"'})
    assert_outcome(stale, 412, "version 2")
    assert client.delete(url).status_code == 204
    assert_outcome(client.get(url), 410, "deleted")
    history = client.get(f"{url}/_history").json()
    assert history["entry"][0]["request"]["method"] == "DELETE"


def test_json_patch_over_http(client: httpx.Client) -> None:
    created = create(client, patient(family="P")).json()
    response = client.patch(
        f"Patient/{created['id']}",
        content=orjson.dumps([{"op": "replace", "path": "/name/0/family", "value": "Q"}]),
        headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200
    assert response.json()["name"][0]["family"] == "Q"


def test_client_mistakes_get_operation_outcomes(client: httpx.Client, server: ServerProcess
                                               ) -> None:
    assert_outcome(client.post("Patient", content=b"{not json", headers=FHIR_JSON), 400,
                   "not valid JSON")
    assert_outcome(client.get("Spaceship/1"), 404, "not a FHIR R4 resource type")
    assert_outcome(client.get(f"Patient/{unique()}"), 404, "does not exist")
    assert_outcome(client.post("Patient", content=b"<Patient/>",
                               headers={"Content-Type": "application/fhir+xml"}), 415, "XML")
    assert_outcome(client.get("metadata", headers={"Accept": "application/fhir+xml"}), 406,
                   "Cannot produce")
    outside = server.base.removesuffix("/fhir") + "/not-fhir"
    assert_outcome(client.get(outside), 404, "FHIR base is /fhir")
    assert_outcome(client.post("Patient", content=orjson.dumps({"resourceType": "Observation"}),
                               headers=FHIR_JSON), 400, "URL names Patient")
    assert_outcome(client.post("metadata", content=b"{}", headers=FHIR_JSON), 405, "not allowed")


def test_invalid_resource_is_422_with_every_issue(client: httpx.Client) -> None:
    bad = patient(birthDate="yesterday", gender="sometimes", active="yes")
    outcome = assert_outcome(create(client, bad), 422, "failed validation")
    expressions = {e for issue in outcome["issue"] for e in issue.get("expression", [])}
    assert {"Patient.birthDate", "Patient.gender", "Patient.active"} <= expressions


def test_conditional_create_is_race_safe(client: httpx.Client, server: ServerProcess) -> None:
    key = unique()

    def attempt(_: int) -> int:
        with httpx.Client(base_url=server.base + "/", timeout=60) as own:
            criteria = {"If-None-Exist": f"identifier=urn:test|{key}"}
            response = create(own, patient(key), **criteria)
            return response.status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(attempt, range(20)))
    assert sorted(statuses) == [200] * 19 + [201]
    found = client.get("Patient", params={"identifier": f"urn:test|{key}"}).json()
    assert found["total"] == 1


def test_synthea_transaction_over_http(client: httpx.Client) -> None:
    bundle = synthea_bundle("001")
    response = client.post("", content=orjson.dumps(bundle), headers=FHIR_JSON)
    assert response.status_code == 200, response.text[:500]
    entries = response.json()["entry"]
    assert len(entries) == 273
    assert {e["response"]["status"] for e in entries} == {"201"}


def test_pretty_and_format(client: httpx.Client) -> None:
    pretty = client.get("metadata", params={"_pretty": "true"})
    assert pretty.text.startswith('{\n  "resourceType"')
    assert client.get("metadata", params={"_format": "json"}).status_code == 200
    assert client.get("metadata", params={"_format": "xml"}).status_code == 406


def test_search_post_form(client: httpx.Client) -> None:
    key = unique()
    create(client, patient(key))
    response = client.post("Patient/_search", data={"identifier": key})
    assert response.json()["total"] == 1


def test_concurrent_updates_never_corrupt_versions(client: httpx.Client,
                                                   server: ServerProcess) -> None:
    id = f"race-{unique()[:12]}"

    def attempt(n: int) -> int:
        with httpx.Client(base_url=server.base + "/", timeout=60) as own:
            body = orjson.dumps(patient(id=id, family=f"F{n}"))
            return own.put(f"Patient/{id}", content=body, headers=FHIR_JSON).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(attempt, range(10)))
    assert set(statuses) <= {200, 201, 409}  # 409 only when two first writes collide
    assert statuses.count(201) == 1
    written = sum(1 for status in statuses if status in (200, 201))
    history = client.get(f"Patient/{id}/_history").json()
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"]) == \
        list(range(1, written + 1))


def test_search_over_http_with_paging_and_includes(client: httpx.Client) -> None:
    family = f"Fam{unique()[:10]}"
    org = create(client, {"resourceType": "Organization", "name": f"Org {family}"}).json()
    for n in range(5):
        create(client, patient(family=family, birthDate=f"198{n}-01-01",
                               managingOrganization={"reference": f"Organization/{org['id']}"}))
    first = client.get("Patient", params={"family": family.lower(), "_count": "2",
                                          "_sort": "-birthdate",
                                          "_include": "Patient:organization"}).json()
    assert first["total"] == 5
    years, url = [], None
    page = first
    while True:
        years += [e["resource"]["birthDate"][:4] for e in page["entry"]
                  if e["search"]["mode"] == "match"]
        assert any(e["search"]["mode"] == "include" and e["resource"]["id"] == org["id"]
                   for e in page["entry"])
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if url is None:
            break
        page = httpx.get(url, timeout=30).json()  # the link is absolute and self-contained
    assert years == ["1984", "1983", "1982", "1981", "1980"]
    posted = client.post("Patient/_search", data={"family": family, "birthdate": "lt1982"})
    assert posted.json()["total"] == 2


def test_search_errors_are_operation_outcomes(client: httpx.Client) -> None:
    assert_outcome(client.get("Patient", params={"birthdate": "yesterday"}), 400,
                   "not a FHIR date")
    assert_outcome(client.get("Patient", params={"shoe-size": "9"},
                              headers={"Prefer": "handling=strict"}), 400, "not known")
    lenient = client.get("Patient", params={"shoe-size": "9", "_count": "1"}).json()
    assert lenient["entry"][-1]["search"]["mode"] == "outcome"


def test_search_over_ranges_comparators_and_string_dates(client: httpx.Client) -> None:
    """The index gaps closed for the search issue, end to end over HTTP on both databases."""
    tag = unique()
    coded = {"coding": [{"system": "urn:test", "code": tag}]}
    years = {"system": "http://unitsofmeasure.org", "code": "a"}

    def made(resource: dict) -> str:
        response = create(client, resource)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def found(kind: str, **params: str) -> list[str]:
        bundle = client.get(kind, params={"code": f"urn:test|{tag}", **params}).json()
        return sorted(e["resource"]["id"] for e in bundle.get("entry", []))

    subject = {"reference": "Patient/x"}
    point = made({"resourceType": "Condition", "code": coded, "subject": subject,
                  "onsetAge": {"value": 40, **years}})
    span = made({"resourceType": "Condition", "code": coded, "subject": subject,
                 "onsetRange": {"low": {"value": 30, **years}, "high": {"value": 50, **years}}})
    assert found("Condition", **{"onset-age": "40"}) == [point]
    assert found("Condition", **{"onset-age": "gt45"}) == [span]
    assert found("Condition", **{"onset-age": "ap40"}) == sorted([point, span])

    def observation(**value: object) -> dict:
        return {"resourceType": "Observation", "status": "final", "code": coded, **value}

    below = made(observation(valueQuantity={"value": 5, "comparator": "<", "code": "mg"}))
    exact = made(observation(valueQuantity={"value": 5, "code": "mg"}))
    wave = made(observation(valueSampledData={"origin": {"value": 100}, "period": 10,
                                              "dimensions": 1, "data": "2 12 E"}))
    assert found("Observation", **{"value-quantity": "lt5"}) == [below]
    assert found("Observation", **{"value-quantity": "5||mg"}) == [exact]
    assert found("Observation", **{"value-quantity": "ge5"}) == sorted([exact, wave])
    assert found("Observation", **{"value-quantity": "gt110"}) == [wave]

    shot = made({"resourceType": "Immunization", "status": "completed", "vaccineCode": coded,
                 "patient": subject, "occurrenceString": "2019-05"})
    made({"resourceType": "Immunization", "status": "completed", "vaccineCode": coded,
          "patient": subject, "occurrenceString": "last spring"})
    bundle = client.get("Immunization", params={"vaccine-code": f"urn:test|{tag}",
                                                "date": "2019"}).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [shot]

    old = made({"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"url": f"urn:doc:{tag}"}}]})
    new = made({"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"url": f"urn:doc:{tag}:2"}}],
                "relatesTo": [{"code": "replaces",
                               "target": {"reference": f"DocumentReference/{old}"}}]})
    related = client.get("DocumentReference",
                         params={"relationship": f"DocumentReference/{old}$replaces"}).json()
    assert [e["resource"]["id"] for e in related["entry"]] == [new]
