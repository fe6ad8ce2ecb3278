"""The OpenAPI document says everything the CapabilityStatement says: every type with its
interactions, every search parameter, every operation."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.search.parameters import default_registry
from hygeia.server.rest.capability import capability_statement
from hygeia.server.rest.core_operations import core_operation_registry
from hygeia.server.rest.openapi import openapi_document

OPERATIONS = core_operation_registry()


@pytest.fixture(scope="module")
def statement() -> dict[str, Any]:
    return capability_statement("sqlite", default_registry(), OPERATIONS)


@pytest.fixture(scope="module")
def document(statement: dict[str, Any]) -> dict[str, Any]:
    return openapi_document(statement, "http://example.org/fhir/", OPERATIONS)


def _query_names(operation: dict[str, Any]) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if "name" in p}


def test_every_type_and_search_parameter_of_the_statement_is_a_path(
        statement: dict[str, Any], document: dict[str, Any]) -> None:
    paths = document["paths"]
    for entry in statement["rest"][0]["resource"]:
        type_ = entry["type"]
        search = paths[f"/{type_}"]["get"]
        assert _query_names(search) >= {p["name"] for p in entry["searchParam"]}, type_
        assert "_count" in str(search["parameters"])  # result parameters by reference
        assert "get" in paths[f"/{type_}/{{id}}"] and "delete" in paths[f"/{type_}/{{id}}"]
        assert "get" in paths[f"/{type_}/{{id}}/_history/{{vid}}"]


def test_each_interaction_is_its_method(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert set(paths["/Patient"]) == {"get", "post"}
    assert {"get", "put", "patch", "delete"} <= set(paths["/Patient/{id}"])
    body = paths["/Patient"]["post"]["requestBody"]["content"]["application/fhir+json"]
    assert body["schema"]["properties"]["resourceType"]["enum"] == ["Patient"]
    # Subscriptions are honoured (server/subscriptions), so written like any type
    assert "post" in paths["/Subscription"]
    assert "put" in paths["/Subscription/{id}"]


def test_every_operation_of_the_statement_is_a_path(
        statement: dict[str, Any], document: dict[str, Any]) -> None:
    paths = document["paths"]
    for entry in statement["rest"][0]["resource"]:
        for operation in entry["operation"]:
            name = f"${operation['name']}"
            assert any(path.startswith(f"/{entry['type']}/") and path.endswith(name)
                       for path in paths), (entry["type"], name)
    for operation in statement["rest"][0]["operation"]:
        assert f"/${operation['name']}" in paths
    assert set(paths["/Patient/{id}/$everything"]) == {"parameters", "get"}
    assert set(paths["/Group/{id}/$export"]) == {"parameters", "get", "post"}
    assert "post" in paths["/"] and "get" in paths["/_history"]


def test_errors_are_operation_outcomes(document: dict[str, Any]) -> None:
    read = document["paths"]["/Patient/{id}"]["get"]
    assert read["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}
    error = document["components"]["responses"]["Error"]
    assert error["content"]["application/fhir+json"]["schema"]["$ref"].endswith(
        "OperationOutcome")
    assert document["servers"] == [{"url": "http://example.org/fhir"}]
    operation_ids = [operation["operationId"] for item in document["paths"].values()
                     for key, operation in item.items() if key != "parameters"]
    assert len(operation_ids) == len(set(operation_ids))


def test_a_created_resource_links_to_its_instance_interactions(document: dict[str, Any]) -> None:
    operation_ids = {operation["operationId"] for item in document["paths"].values()
                     for key, operation in item.items() if key != "parameters"}
    links = document["paths"]["/Observation"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} == {
        "readObservation", "updateObservation", "patchObservation", "deleteObservation",
        "historyObservationInstance", "vreadObservation"}
    assert links["vread"]["parameters"]["vid"] == "$response.body#/meta/versionId"
    targets = {link["operationId"] for item in document["paths"].values()
               for key, operation in item.items() if key != "parameters"
               for response in operation["responses"].values()
               for link in response.get("links", {}).values()}
    assert targets <= operation_ids
