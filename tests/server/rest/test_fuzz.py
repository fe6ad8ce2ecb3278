"""No client input may crash the service: every failure is a FhirError (an OperationOutcome)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hygeia.fhir.outcome import FhirError
from hygeia.server import FhirService
from hygeia.server.loading.loader import Loader, LoadError
from hygeia.store import open_repository
from tests.helpers import call

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["resourceType", "id", "entry", "request", "method",
                                       "url", "resource", "type", "fullUrl", "reference",
                                       "identifier", "name", "op", "path", "value"]),
                      children, max_size=5),
    max_leaves=20,
)
resource_types = st.sampled_from(["Patient", "Observation", "Bundle", "Basic"])
bundles = st.fixed_dictionaries({
    "resourceType": st.just("Bundle"),
    "type": st.sampled_from(["transaction", "batch", "collection", 3]),
    "entry": st.lists(st.fixed_dictionaries({
        "request": st.fixed_dictionaries({
            "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "X", 1]),
            "url": st.sampled_from(["Patient", "Patient/1", "Patient?identifier=a",
                                    "Patient?_id=", "Nope/1", "", "Patient/1/_history/x"]),
        }),
        "resource": json_values,
        "fullUrl": st.sampled_from(["urn:uuid:1", "urn:uuid:2", "Patient/1"]),
    }), max_size=4),
})


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory) -> FhirService:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    return FhirService(open_repository(f"sqlite:///{path}?synchronous=off"))


def _survives(action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except FhirError as error:
        assert error.issues and error.issues[0].diagnostics


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(resource_types, json_values)
def test_writes_with_any_body(fuzz_service: FhirService, kind: str, body: object) -> None:
    _survives(lambda: call(fuzz_service, "POST", kind, body))
    _survives(lambda: call(fuzz_service, "PUT", f"{kind}/1", body))
    _survives(lambda: call(fuzz_service, "PATCH", f"{kind}/1", body,
                           content_type="application/json-patch+json"))
    _survives(lambda: call(fuzz_service, "POST", f"{kind}/$validate", body))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bundles)
def test_any_bundle(fuzz_service: FhirService, bundle: dict) -> None:
    _survives(lambda: call(fuzz_service, "POST", "", bundle))


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=30), st.text(max_size=30))
def test_any_path_and_query(fuzz_service: FhirService, path: str, query: str) -> None:
    _survives(lambda: call(fuzz_service, "GET", f"{path}?{query}"))
    _survives(lambda: call(fuzz_service, "DELETE", f"Patient?{query}"))
    _survives(lambda: call(fuzz_service, "GET", f"Patient/_history?{query}"))


def _line(value: object) -> bytes:
    """``value`` as a JSON line; what JSON cannot hold (a huge integer) as its repr."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return repr(value).encode()


ndjson_lines = st.lists(
    st.binary(max_size=40) | json_values.map(_line)
    | st.builds(lambda kind, extra: _line({"resourceType": kind, **extra}),
                resource_types, st.dictionaries(st.sampled_from(["id", "name", "gender",
                                                                 "status", "meta", "text"]),
                                                json_values, max_size=3)),
    max_size=8)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ndjson_lines)
def test_bulk_load_of_any_lines(fuzz_service: FhirService, lines: list[bytes]) -> None:
    """Any bytes as NDJSON lines: every non-blank line is stored or is an error, never a crash."""
    errors: list[LoadError] = []
    with Loader(fuzz_service, workers=0, upsert=True, on_error=errors.append) as loader:
        loader.load_lines("fuzz.ndjson", lines)
    report = loader.report
    non_blank = sum(1 for line in lines if line.strip())
    assert report.resources + report.errors == non_blank
    assert all(0 < error.line <= len(lines) and error.message for error in errors)
