"""The router names an unknown operation as an operation, wherever it is asked for, and
resolves a known one through the operation registry."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import MethodNotAllowed, NotFound
from hygeia.server.rest.core_operations import core_operation_registry
from hygeia.server.rest.operations import OperationRegistry
from hygeia.server.rest.router import OPERATION, parse_route


@pytest.fixture(scope="module")
def operations() -> OperationRegistry:
    return core_operation_registry()


@pytest.mark.parametrize(("path", "sentence", "expression"), [
    ("Observation/$lastn", "The operation $lastn is not supported on Observation.",
     "Observation"),
    ("Patient/7/$foo", "The operation $foo is not supported on Patient/[id].", "Patient"),
    ("$bar", "The operation $bar is not supported on [base] (the system level).", None),
    ("Group/$export", "The operation $export is not supported on Group. It is offered on "
                      "[base], Patient and Group/[id].", "Group"),
])
def test_unknown_operation_is_a_404_naming_it(path: str, sentence: str, expression: str | None,
                                              operations: OperationRegistry) -> None:
    with pytest.raises(NotFound) as raised:
        parse_route("GET", path, [], operations)
    issue = raised.value.issues[0]
    assert issue.code == "not-supported" and issue.diagnostics.startswith(sentence)
    assert issue.expression == expression


def test_known_operations_route_to_their_registration(operations: OperationRegistry) -> None:
    validate = parse_route("POST", "Observation/$validate", [], operations)
    assert (validate.interaction, validate.resource_type) == ("validate", "Observation")
    assert validate.operation is operations.get("validate")
    everything = parse_route("GET", "Patient/7/$everything", [], operations)
    assert (everything.interaction, everything.id) == ("everything", "7")
    assert parse_route("POST", "$reindex", [], operations).interaction == "reindex"
    assert parse_route("GET", "Group/g1/$export", [], operations).interaction == "export"


def test_without_a_registry_an_operation_is_only_shaped() -> None:
    """Callers that need the request's shape only (metrics labels) get ``operation``."""
    route = parse_route("GET", "Patient/7/$everything", [])
    assert (route.interaction, route.operation_name, route.operation) == \
        (OPERATION, "$everything", None)


def test_an_operation_refuses_methods_it_was_not_registered_with(
        operations: OperationRegistry) -> None:
    with pytest.raises(MethodNotAllowed) as raised:
        parse_route("DELETE", "Patient/7/$everything", [], operations)
    assert "use GET" in raised.value.issues[0].diagnostics
    assert parse_route("HEAD", "Patient/7/$everything", [], operations).interaction == \
        "everything"


def test_a_misplaced_operation_says_where_it_is_offered(operations: OperationRegistry) -> None:
    with pytest.raises(NotFound) as raised:
        parse_route("GET", "Patient/$everything", [], operations)
    assert raised.value.issues[0].diagnostics.endswith("It is offered on Patient/[id].")


def test_a_hostile_operation_name_is_shown_short() -> None:
    with pytest.raises(NotFound) as raised:
        parse_route("GET", "Observation/$" + "x\x00" * 5000, [])
    assert len(raised.value.issues[0].diagnostics) < 200


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "Observation"), ("post", "Observation"), ("GET", "Patient/1"),
    ("PUT", "Patient/1"), ("DELETE", "Patient/a.b"), ("GET", "Patient/1/_history/2"),
    ("GET", "Patient/1/Observation"), ("POST", ""), ("GET", "metadata"),
    ("GET", "Observation/_history"), ("POST", "/Observation/"),
])
def test_a_remembered_route_is_the_route_parsed_afresh(method: str, path: str,
                                                       operations: OperationRegistry) -> None:
    from hygeia.server.rest.router import _parsed_route

    for _ in range(2):
        assert parse_route(method, path, [], operations) == \
            _parsed_route(method, path, [], operations)


@pytest.mark.parametrize(("method", "path", "error"), [
    ("POST", "AuditEvent", MethodNotAllowed), ("PUT", "Observation", Exception),
    ("GET", "NoSuchType", NotFound), ("PATCH", "", MethodNotAllowed),
    ("GET", "Patient/has space", Exception),
])
def test_a_refused_route_is_refused_every_time(method: str, path: str,
                                               error: type[Exception]) -> None:
    for _ in range(3):
        with pytest.raises(error):
            parse_route(method, path, [])
