"""``$viewdefinition-run`` and the ViewDefinition type through a real ``hygeia serve`` on
SQLite and PostgreSQL: the three levels, every parameter, the four row formats, and
the errors a client sees (always an OperationOutcome naming the parameter)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from tests.conftest import BACKENDS, ServerProcess, backend_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition", "url": "urn:test:view:patients", "name": "patients",
    "status": "active", "resource": "Patient",
    "select": [{"column": [{"name": "id", "path": "id", "type": "id"},
                           {"name": "gender", "path": "gender", "type": "code"},
                           {"name": "born", "path": "birthDate", "type": "date"},
                           {"name": "alive", "path": "deceased.ofType(boolean).not()",
                            "type": "boolean"}]}],
}
OBSERVATIONS: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "glucose", "status": "active",
    "resource": "Observation",
    "select": [{"column": [{"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                           {"name": "value", "path": "value.ofType(Quantity).value",
                            "type": "decimal"}]}],
}


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           analytics_installed: None) -> Iterator[ServerProcess]:
    with backend_server(request, tmp_path_factory, "vdr") as process:
        client = process.client
        for id, gender, born in (("p1", "female", "1970-01-01"), ("p2", "male", "1980-05-05"),
                                 ("p3", "female", "1990-09-09")):
            put(process, {"resourceType": "Patient", "id": id, "gender": gender,
                          "birthDate": born, "deceasedBoolean": False})
        for index, (patient, value) in enumerate((("p1", 5.5), ("p2", 7.25), ("p1", 6.0))):
            put(process, {"resourceType": "Observation", "id": f"o{index}", "status": "final",
                          "code": {"text": "glucose"},
                          "subject": {"reference": f"Patient/{patient}"},
                          "valueQuantity": {"value": value, "unit": "mmol/L"}})
        put(process, {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                      "member": [{"entity": {"reference": "Patient/p2"}}]})
        made = client.put("ViewDefinition/patients", json={**VIEW, "id": "patients"},
                          headers=FHIR_JSON)
        assert made.status_code in (200, 201), made.text
        yield process


def put(server: ServerProcess, resource: dict[str, Any]) -> None:
    answer = server.client.put(f"{resource['resourceType']}/{resource['id']}", json=resource,
                               headers=FHIR_JSON)
    assert answer.status_code in (200, 201), answer.text


def run(server: ServerProcess, *parameters: dict[str, Any], path: str = "$viewdefinition-run"
        ) -> Any:
    body = {"resourceType": "Parameters", "parameter": list(parameters)}
    return server.client.post(path, content=orjson.dumps(body), headers=FHIR_JSON)


def view_resource(view: dict[str, Any]) -> dict[str, Any]:
    return {"name": "viewResource", "resource": view}


def test_the_three_levels_run_the_same_view(server: ServerProcess) -> None:
    system = run(server, view_resource(VIEW))
    assert system.status_code == 200, system.text
    assert system.headers["content-type"].startswith("application/json")
    rows = system.json()
    assert sorted(r["id"] for r in rows) == ["p1", "p2", "p3"]
    assert rows[0] == {"id": "p1", "gender": "female", "born": "1970-01-01", "alive": True}
    by_type = run(server, {"name": "viewReference", "valueReference":
                           {"reference": "ViewDefinition/patients"}},
                  path="ViewDefinition/$viewdefinition-run")
    assert by_type.json() == rows
    by_url = run(server, {"name": "viewReference", "valueCanonical": VIEW["url"]})
    assert by_url.json() == rows
    instance = server.client.get("ViewDefinition/patients/$viewdefinition-run")
    assert instance.status_code == 200, instance.text
    assert instance.json() == rows


def test_formats_header_and_limit(server: ServerProcess) -> None:
    def as_format(kind: str, *extra: dict[str, Any]) -> Any:
        answer = run(server, view_resource(VIEW), {"name": "_format", "valueCode": kind}, *extra)
        assert answer.status_code == 200, answer.text
        return answer

    ndjson = as_format("ndjson")
    assert [orjson.loads(line)["id"] for line in ndjson.text.splitlines()] == ["p1", "p2", "p3"]
    table = list(csv.reader(io.StringIO(as_format("csv").text)))
    assert table[0] == ["id", "gender", "born", "alive"]
    assert table[1] == ["p1", "female", "1970-01-01", "true"]
    bare = list(csv.reader(io.StringIO(as_format(
        "csv", {"name": "header", "valueBoolean": False}).text)))
    assert bare == table[1:]
    parquet = pq.read_table(io.BytesIO(as_format("parquet").content))
    assert parquet.column_names == ["id", "gender", "born", "alive"]
    assert str(parquet.schema.field("alive").type) == "bool"
    assert parquet.column("id").to_pylist() == ["p1", "p2", "p3"]
    limited = as_format("json", {"name": "_limit", "valueInteger": 2})
    assert len(limited.json()) == 2


def test_patient_group_since_and_given_resources(server: ServerProcess) -> None:
    def values(*extra: dict[str, Any]) -> list[Any]:
        answer = run(server, view_resource(OBSERVATIONS), *extra)
        assert answer.status_code == 200, answer.text
        return sorted((r["patient"], r["value"]) for r in answer.json())

    assert values() == [("Patient/p1", 5.5), ("Patient/p1", 6.0), ("Patient/p2", 7.25)]
    assert values({"name": "patient", "valueReference": {"reference": "Patient/p1"}}) == [
        ("Patient/p1", 5.5), ("Patient/p1", 6.0)]
    assert values({"name": "group", "valueReference": {"reference": "Group/g1"}}) == [
        ("Patient/p2", 7.25)]
    time.sleep(0.01)
    marker = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1)) + "Z"
    put(server, {"resourceType": "Observation", "id": "o9", "status": "final",
                 "code": {"text": "glucose"}, "subject": {"reference": "Patient/p3"},
                 "valueQuantity": {"value": 9.0}})
    recent = values({"name": "_since", "valueInstant": marker})
    assert ("Patient/p3", 9.0) in recent
    given = values({"name": "resource", "resource": {
        "resourceType": "Observation", "id": "x", "status": "final", "code": {"text": "g"},
        "subject": {"reference": "Patient/zz"}, "valueQuantity": {"value": 1.5}}})
    assert given == [("Patient/zz", 1.5)]


def test_errors_are_operation_outcomes(server: ServerProcess) -> None:
    def refused(answer: Any, status: int, where: str) -> None:
        assert answer.status_code == status, answer.text
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert where in outcome["issue"][0].get("expression", [""])[0], outcome

    bad_path = {**VIEW, "select": [{"column": [{"name": "x", "path": "name.("}]}]}
    refused(run(server, view_resource(bad_path)), 422, "select[0].column[0].path")
    several = {**VIEW, "select": [{"column": [{"name": "x", "path": "id | gender"}]}]}
    refused(run(server, view_resource(several)), 422, "column[0]")
    refused(run(server, view_resource(VIEW), {"name": "_format", "valueCode": "xml"}), 400,
            "_format")
    refused(run(server, view_resource(VIEW), {"name": "_limit", "valueInteger": 0}), 400,
            "_limit")
    refused(run(server, view_resource(VIEW), {"name": "source", "valueString": "s3://x"}), 400,
            "source")
    refused(run(server), 400, "viewResource")
    refused(run(server, {"name": "viewReference", "valueReference":
                         {"reference": "ViewDefinition/nope"}}), 404, "viewReference")
    refused(run(server, view_resource(VIEW), {"name": "bogus", "valueString": "1"}), 400,
            "parameter[1]")


def test_view_definitions_are_stored_validated_and_searched(server: ServerProcess) -> None:
    client = server.client

    def names(query: str) -> list[str]:
        bundle = client.get(f"ViewDefinition?{query}").json()
        return [entry["resource"]["name"] for entry in bundle.get("entry", [])]

    assert names("name=patients") == ["patients"]
    assert names("resource=Patient&status=active") == ["patients"]
    assert names(f"url={VIEW['url']}") == ["patients"]
    assert names("resource=Observation") == []
    invalid = client.post("ViewDefinition", json={**VIEW, "url": "urn:x", "select": [
        {"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "gender"}]}]},
        headers=FHIR_JSON)
    assert invalid.status_code == 422, invalid.text
    assert any("select[0]" in where for issue in invalid.json()["issue"]
               for where in issue.get("expression", []))
    statement = client.get("metadata").json()
    offered = {item["type"]: item for item in statement["rest"][0]["resource"]}
    assert "ViewDefinition" in offered


def test_a_get_chooses_the_row_format_with_format(server: ServerProcess) -> None:
    """The operation declares its own formats (``Operation.formats``), so the HTTP edge
    hands ``_format=csv|ndjson|parquet`` to it instead of answering 406."""
    path = "ViewDefinition/patients/$viewdefinition-run"
    table = server.client.get(path, params={"_format": "csv"})
    assert table.status_code == 200, table.text
    assert table.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(table.text)))[1] == ["p1", "female", "1970-01-01", "true"]
    by_media_type = server.client.get(path, params={"_format": "text/csv", "header": "false"})
    assert by_media_type.status_code == 200, by_media_type.text
    assert by_media_type.text.splitlines()[0] == "p1,female,1970-01-01,true"
    lines = server.client.get(path, params={"_format": "ndjson", "_limit": "2"})
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    assert [orjson.loads(line)["id"] for line in lines.text.splitlines()] == ["p1", "p2"]
    parquet = server.client.get(path, params={"_format": "parquet"})
    assert parquet.status_code == 200, parquet.text
    assert pq.read_table(io.BytesIO(parquet.content)).column("id").to_pylist() == [
        "p1", "p2", "p3"]
    as_json = server.client.get(path, params={"_format": "json"})
    assert [row["id"] for row in as_json.json()] == ["p1", "p2", "p3"]


def test_other_formats_are_still_refused_with_406(server: ServerProcess) -> None:
    xml = server.client.get("ViewDefinition/patients/$viewdefinition-run",
                            params={"_format": "xml"})
    assert xml.status_code == 406, xml.text
    sentence = xml.json()["issue"][0]["diagnostics"]
    assert "csv" in sentence and "parquet" in sentence, sentence
    # the operation's formats are its own: a read or a search still speaks FHIR JSON only
    for path in ("Patient/p1", "Patient", "ViewDefinition/patients"):
        refused = server.client.get(path, params={"_format": "csv"})
        assert refused.status_code == 406, (path, refused.text)
        assert refused.json()["resourceType"] == "OperationOutcome"
