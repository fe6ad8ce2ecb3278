"""A resource type outside R4, declared through the ``hygeia.resource_types`` entry-point
group, is a resource like the others in every process: the serving processes (REST,
search, transactions validated in the offload helper, CapabilityStatement, export), the
loader's worker processes and the CLI's scope checks. tests/cli/example_type.py declares it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.api.test_bulk_http import KICK_OFF, poll
from tests.conftest import ServerProcess

REPOSITORY = Path(__file__).parent.parent.parent
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def declare(site: Path, monkeypatch: pytest.MonkeyPatch, entries: str) -> None:
    """The package metadata of an installed package with these ``hygeia.resource_types``
    entries; every process started after this sees it."""
    info = site / "example_type-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: example-type\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[hygeia.resource_types]\n{entries}\n")
    path = [str(site), str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))


@pytest.fixture
def with_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    declare(tmp_path / "site", monkeypatch, "Greeting = tests.cli.example_type:GREETING")


@pytest.fixture
def server(with_type: None, database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, "--workers", "2", "--files", str(tmp_path / "files"))
    try:
        yield process
    finally:
        process.stop()


def greeting(name: str, *lines: str, status: str = "active",
             patient: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Greeting", "name": name, "status": status}
    if lines:
        resource["line"] = [{"name": line, "text": f"{line}!"} for line in lines]
    if patient:
        resource["audience"] = {"reference": patient}
    return resource


def expressions(outcome: dict[str, Any]) -> list[str]:
    return [where for issue in outcome["issue"] for where in issue.get("expression", [])]


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args],
                          capture_output=True, text=True, timeout=120)


def test_a_logical_type_is_stored_validated_and_searched(server: ServerProcess) -> None:
    client = server.client
    assert client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                      headers=FHIR_JSON).status_code == 201
    made = client.post("Greeting", json=greeting("hello", "a", "b", patient="Patient/p1"),
                       headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    stored = client.get(f"Greeting/{made.json()['id']}").json()
    assert [line["name"] for line in stored["line"]] == ["a", "b"]

    bad_code = client.post("Greeting", json=greeting("x", status="bogus"), headers=FHIR_JSON)
    assert bad_code.status_code == 422
    assert "Greeting.status" in expressions(bad_code.json())
    twice = client.post("Greeting", json=greeting("x", "a", "a"), headers=FHIR_JSON)
    assert twice.status_code == 422  # the type's own rule, beyond its elements
    assert "Greeting.line[1].name" in expressions(twice.json())

    def found(query: str) -> list[str]:
        bundle = client.get(f"Greeting?{query}").json()
        return [entry["resource"]["name"] for entry in bundle.get("entry", [])]

    assert found("name=hel") == ["hello"]
    assert found("status=active&patient=Patient/p1") == ["hello"]
    assert found("name=nobody") == []
    everything = client.get("Patient/p1/$everything").json()
    assert "Greeting" in {entry["resource"]["resourceType"] for entry in everything["entry"]}


def test_a_transaction_of_the_type_is_validated_by_the_offload_helper(
        server: ServerProcess) -> None:
    def transaction(*resources: dict[str, Any]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": resource, "request": {"method": "POST", "url": "Greeting"}}
            for resource in resources]}

    refused = server.client.post("", content=orjson.dumps(transaction(
        greeting("ok"), greeting("twice", "a", "a"))), headers=FHIR_JSON)
    assert refused.status_code in (400, 422), refused.text
    assert "used twice" in refused.text
    assert server.client.get("Greeting").json()["total"] == 0  # nothing of it stored
    accepted = server.client.post("", content=orjson.dumps(transaction(
        greeting("one"), greeting("two"))), headers=FHIR_JSON)
    assert accepted.status_code == 200, accepted.text
    assert server.client.get("Greeting?name=two").json()["total"] == 1


def test_the_capability_statement_and_export_follow_the_declaration(
        server: ServerProcess) -> None:
    statement = server.client.get("metadata").json()
    entry = next(item for item in statement["rest"][0]["resource"]
                 if item["type"] == "Greeting")
    assert entry["profile"] == "urn:example:StructureDefinition:Greeting"
    assert {"name", "status", "patient"} <= {param["name"] for param in entry["searchParam"]}
    server.client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                      headers=FHIR_JSON)
    server.client.post("Greeting", json=greeting("hi", patient="Patient/p1"),
                       headers=FHIR_JSON)

    def exported_types(path: str) -> set[str]:
        kicked = server.client.get(path, headers=KICK_OFF)
        assert kicked.status_code == 202, kicked.text
        manifest = poll(server.client, kicked.headers["Content-Location"]).json()
        return {item["type"] for item in manifest["output"]}

    assert exported_types("$export") == {"Patient"}  # declared out of system exports
    assert exported_types("$export?_type=Greeting") == {"Greeting"}
    assert exported_types("Patient/$export") == {"Patient", "Greeting"}  # its compartment


def test_the_loader_workers_and_the_scope_parser_know_the_type(
        with_type: None, database_url: str, tmp_path: Path) -> None:
    ndjson = tmp_path / "greetings.ndjson"
    lines = [{**greeting(f"g{number}"), "id": f"g{number}"} for number in range(50)]
    lines[7] = {**greeting("bad", "a", "a"), "id": "bad"}
    ndjson.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    loaded = hygeia("load", "--db", database_url, "--workers", "2", str(ndjson))
    assert loaded.returncode == 1  # the one bad line is reported, the rest loaded
    assert f"error: {ndjson}:8: invalid: Greeting.line[1].name: The line name 'a' is used " \
        "twice." in loaded.stderr
    server = ServerProcess(database_url)
    try:
        assert server.client.get("Greeting?name=g49").json()["total"] == 1
        assert server.client.get("Greeting?_summary=count").json()["total"] == 49
    finally:
        server.stop()
    made = hygeia("auth", "client", "create", "--db", database_url, "--name", "views",
                  "--scopes", "system/Greeting.rs")
    assert made.returncode == 0, made.stderr


@pytest.mark.parametrize(("entries", "said"), [
    ("Greeting = tests.cli.example_type:NOWHERE", "the resource type 'Greeting' "
     "(tests.cli.example_type:NOWHERE) cannot be loaded"),
    ("Greeting = tests.cli.example_type:unique_line_names", "is not a "
     "hygeia.fhir.spec.logical.ResourceType"),
])
def test_a_broken_declaration_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                entries: str, said: str) -> None:
    declare(tmp_path / "site", monkeypatch, entries)
    resource = tmp_path / "patient.json"
    resource.write_text('{"resourceType": "Patient"}')
    result = hygeia("validate", str(resource))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines
