"""Interceptors wrap every request, outermost first; one may refuse a request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from hygeia.fhir.outcome import FhirError, Forbidden
from hygeia.server import FhirRequest, FhirResponse, FhirService
from tests.helpers import body, call, patient


@dataclass
class Noting:
    name: str
    log: list[str]

    def intercept(self, request: FhirRequest,
                  proceed: Callable[[FhirRequest], FhirResponse]) -> FhirResponse:
        self.log.append(f"{self.name} in {request.method} {request.path}")
        response = proceed(request)
        self.log.append(f"{self.name} out {response.status}")
        return response


@dataclass
class NoDeletes:
    refused: list[str] = field(default_factory=list)

    def intercept(self, request: FhirRequest,
                  proceed: Callable[[FhirRequest], FhirResponse]) -> FhirResponse:
        if request.method == "DELETE":
            self.refused.append(request.path)
            raise Forbidden("Deletes are switched off here.", expression="DELETE")
        return proceed(request)


def test_interceptors_wrap_requests_outermost_first(service: FhirService) -> None:
    log: list[str] = []
    service.add_interceptor(Noting("outer", log))
    service.add_interceptor(Noting("inner", log))
    call(service, "POST", "Patient", patient())
    assert log == ["outer in POST Patient", "inner in POST Patient", "inner out 201",
                   "outer out 201"]


def test_an_interceptor_refuses_before_anything_is_done(service: FhirService) -> None:
    guard = NoDeletes()
    service.add_interceptor(guard)
    created = body(call(service, "POST", "Patient", patient()))
    with pytest.raises(FhirError) as refused:
        call(service, "DELETE", f"Patient/{created['id']}")
    assert refused.value.status == 403
    assert guard.refused == [f"Patient/{created['id']}"]
    assert call(service, "GET", f"Patient/{created['id']}").status == 200


def test_batch_entries_pass_through_the_interceptors(service: FhirService) -> None:
    log: list[str] = []
    service.add_interceptor(Noting("only", log))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient?_count=1"}}]}
    call(service, "POST", "", batch)
    assert log == ["only in POST ", "only in POST Patient", "only out 201",
                   "only in GET Patient", "only out 200", "only out 200"]
