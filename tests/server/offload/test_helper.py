"""The offload helpers: same rows, same verdicts, and inline work when a helper dies."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from hygeia.fhir.outcome import Unprocessable
from hygeia.server import FhirRequest, FhirService, Settings
from hygeia.store.base import Repository
from hygeia.store.schema import INDEX_TABLES
from tests.helpers import call, synthea_bundle


@pytest.fixture
def offloading(repository: Repository) -> Iterator[FhirService]:
    service = FhirService(repository, Settings(offload=True))
    try:
        yield service
    finally:
        service.close()


def post_bundle(service: FhirService, bundle: dict[str, Any]) -> Any:
    """POST a Bundle as the HTTP edge does: with its raw bytes beside the parsed body."""
    raw = orjson.dumps(bundle)
    return service.handle(FhirRequest("POST", "", body=orjson.loads(raw),
                                      base_url="http://test/fhir/", raw_body=raw))


def index_counts(repository: Repository) -> dict[str, int]:
    with repository.reader() as session:
        execute = session.execute  # type: ignore[attr-defined]
        return {table: int(execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in INDEX_TABLES}


def test_offloaded_rows_equal_inline_rows(offloading: FhirService, tmp_path: Any) -> None:
    from hygeia.store import open_repository

    bundle = synthea_bundle("001")
    assert post_bundle(offloading, bundle).status == 200
    inline_repository = open_repository(f"sqlite:///{tmp_path}/inline.db")
    try:
        assert post_bundle(FhirService(inline_repository), bundle).status == 200
        expected = index_counts(inline_repository)
    finally:
        inline_repository.close()
    assert sum(expected.values()) > 1000
    assert index_counts(offloading.repository) == expected
    found = call(offloading, "GET", "Observation?code=http://loinc.org|8302-2&_summary=count")
    assert found.body_dict()["total"] > 0  # type: ignore[index]


def test_invalid_transaction_is_refused_with_every_issue(offloading: FhirService) -> None:
    bundle = synthea_bundle("001")
    bundle["entry"][3]["resource"]["status"] = "not-a-status"
    bundle["entry"][5]["resource"]["bogus"] = True
    with pytest.raises(Unprocessable) as refused:
        post_bundle(offloading, bundle)
    where = {issue.expression for issue in refused.value.issues}
    assert {"Bundle.entry[3].resource.status", "Bundle.entry[5].resource.bogus"} <= where
    assert sum(index_counts(offloading.repository).values()) == 0
    assert call(offloading, "GET", "Patient?_summary=count").body_dict()["total"] == 0  # type: ignore[index]


def test_a_dead_helper_means_inline_work_not_lost_data(offloading: FhirService) -> None:
    for helper in (offloading.extractor, offloading.validator):
        assert helper is not None
        os.kill(helper.pid, signal.SIGKILL)
        os.waitpid(helper.pid, 0)
    bundle = synthea_bundle("006")
    assert post_bundle(offloading, bundle).status == 200
    patients = call(offloading, "GET", "Patient?_summary=count").body_dict()
    assert patients["total"] == 1  # type: ignore[index]
    assert sum(index_counts(offloading.repository).values()) > 500
    bundle["entry"][0]["resource"]["gender"] = "unknown-gender-code"
    with pytest.raises(Unprocessable):
        post_bundle(offloading, bundle)


def test_custom_parameters_reach_the_helper(offloading: FhirService) -> None:
    custom = {"resourceType": "SearchParameter", "id": "obs-device-text",
              "url": "http://example.org/SearchParameter/observation-issued-day",
              "name": "issued-day", "status": "active", "description": "Observation.issued",
              "code": "issued-day", "base": ["Observation"], "type": "date",
              "expression": "Observation.issued"}
    assert call(offloading, "PUT", "SearchParameter/obs-device-text", custom).status == 201
    bundle = synthea_bundle("001")
    assert post_bundle(offloading, bundle).status == 200
    issued = next(e["resource"]["issued"] for e in bundle["entry"]
                  if e["resource"]["resourceType"] == "Observation")
    found = call(offloading, "GET", f"Observation?issued-day={issued[:10]}&_summary=count")
    assert found.body_dict()["total"] > 0  # type: ignore[index]


def transaction_of(count: int) -> dict[str, Any]:
    """A transaction Bundle creating ``count`` Observations."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                      "valueQuantity": {"value": number, "unit": "/min"}},
         "request": {"method": "POST", "url": "Observation"}} for number in range(count)]}


def test_only_full_batches_go_to_the_helper(offloading: FhirService) -> None:
    """A batch sent at flush would be waited for at once: the flush's unfilled batch is
    extracted inline, and its rows are the same as the helper's."""
    from hygeia.server.offload.jobs import BATCH

    extractor = offloading.extractor
    assert extractor is not None
    assert post_bundle(offloading, transaction_of(BATCH - 1)).status == 200
    assert extractor._next_id == 0  # nothing sent: all inline
    assert post_bundle(offloading, transaction_of(BATCH + 5)).status == 200
    assert extractor._next_id == 1  # the full batch; the other 5 inline
    found = call(offloading, "GET", "Observation?code=http://loinc.org|8867-4&value-quantity=le3"
                                    "&_summary=count")
    assert found.body_dict()["total"] == 8  # type: ignore[index]
