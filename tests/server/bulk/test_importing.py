"""$import in process: inputs from the import folder and from Binary, per-line errors,
idempotence and resume."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hygeia.fhir.outcome import BadRequest
from hygeia.server import FhirService, JobSettings, Settings
from hygeia.server.bulk.importing import ImportJob, import_folder
from hygeia.server.jobs.run import JobTiming
from hygeia.store import Repository
from hygeia.store.jobs import COMPLETED, worker_name
from tests.helpers import CrashAfter, body, call, expire_lease

ASYNC = {"prefer_async": True}
GOOD = [{"resourceType": "Patient", "id": f"i{n}", "gender": "female"} for n in range(3)]


@pytest.fixture
def importer(repository: Repository, tmp_path: Path) -> Iterator[FhirService]:
    service = FhirService(repository, Settings(jobs=JobSettings(files_dir=str(tmp_path / "files"))))
    yield service
    service.close()


def ndjson(*lines: Any) -> bytes:
    return b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n"
                    for line in lines)


def parameters(*urls: str, kind: str | None = None) -> dict[str, Any]:
    inputs = [{"name": "input", "part": [
        *([{"name": "type", "valueCode": kind}] if kind else []),
        {"name": "url", "valueUri": url}]} for url in urls]
    return {"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueCode": "application/fhir+ndjson"}, *inputs]}


def run_import(service: FhirService, request: dict[str, Any]) -> dict[str, Any]:
    started = call(service, "POST", "$import", request, **ASYNC)
    assert started.status == 202
    assert service.job_runner().run_all() == 1
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    done = call(service, "GET", status)
    assert done.status == 200, body(done)
    return body(done)


def lines_of(service: FhirService, url: str) -> list[dict[str, Any]]:
    response = call(service, "GET", url.removeprefix("http://test/fhir/"))
    assert response.stream is not None
    return [orjson.loads(line) for line in b"".join(response.stream).splitlines()]


def patient_ids(service: FhirService) -> list[str]:
    found = body(call(service, "GET", "Patient", query=[("_count", "100")]))
    return sorted(entry["resource"]["id"] for entry in found.get("entry", []))


def test_import_from_the_folder_reports_bad_lines(importer: FhirService) -> None:
    (import_folder(importer) / "Patient.ndjson").write_bytes(ndjson(
        GOOD[0], b"{not json", {"resourceType": "Patient", "gender": "sometimes"}, GOOD[1]))
    manifest = run_import(importer, parameters("Patient.ndjson", kind="Patient"))
    assert manifest["output"] == [{"type": "Patient", "inputUrl": "Patient.ndjson",
                                   "count": 2}]
    [errors] = manifest["error"]
    assert errors["count"] == 2 and errors["inputUrl"] == "Patient.ndjson"
    outcomes = lines_of(importer, errors["url"])
    texts = [outcome["issue"][0]["diagnostics"] for outcome in outcomes]
    assert texts[0].startswith("Patient.ndjson line 2:")
    assert texts[1].startswith("Patient.ndjson line 3:") and "gender" in texts[1]
    assert patient_ids(importer) == ["i0", "i1"]


def test_importing_twice_adds_versions_not_duplicates(importer: FhirService) -> None:
    (import_folder(importer) / "p.ndjson.gz").write_bytes(gzip.compress(ndjson(*GOOD)))
    for _ in range(2):
        manifest = run_import(importer, parameters("p.ndjson.gz"))
        assert manifest["output"][0]["count"] == 3 and manifest["error"] == []
    assert patient_ids(importer) == ["i0", "i1", "i2"]
    assert body(call(importer, "GET", "Patient/i1"))["meta"]["versionId"] == "2"


def test_import_from_an_uploaded_binary(importer: FhirService) -> None:
    upload = {"resourceType": "Binary", "id": "upload-1",
              "contentType": "application/fhir+ndjson",
              "data": base64.b64encode(ndjson(*GOOD)).decode()}
    assert call(importer, "PUT", "Binary/upload-1", upload).status == 201
    manifest = run_import(importer, parameters("Binary/upload-1"))
    assert manifest["output"][0]["count"] == 3
    assert patient_ids(importer) == ["i0", "i1", "i2"]


@pytest.mark.parametrize(("request_body", "kwargs", "where"), [
    (parameters("p.ndjson"), {}, "Prefer"),
    ({"resourceType": "Parameters"}, ASYNC, "Parameters.parameter"),
    ({"resourceType": "Patient"}, ASYNC, "resourceType"),
    (parameters("https://example.org/p.ndjson"), ASYNC, "url"),
    (parameters("../../etc/passwd"), ASYNC, "url"),
    (parameters("missing.ndjson"), ASYNC, "url"),
    (parameters("Binary/none"), ASYNC, "url"),
    ({"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueCode": "text/csv"}]}, ASYNC, "Parameters.parameter[0]"),
])
def test_bad_import_requests_are_400(importer: FhirService, request_body: dict[str, Any],
                                     kwargs: dict[str, Any], where: str) -> None:
    with pytest.raises(BadRequest) as raised:
        call(importer, "POST", "$import", request_body, **kwargs)
    assert raised.value.issues[0].expression == where
    assert importer.job_runner().run_all() == 0


def test_a_resumed_import_finishes_without_duplicates(importer: FhirService) -> None:
    folder = import_folder(importer)
    (folder / "a.ndjson").write_bytes(ndjson(*GOOD[:2]))
    (folder / "b.ndjson").write_bytes(ndjson(GOOD[2], b"[]"))
    started = call(importer, "POST", "$import", parameters("a.ndjson", "b.ndjson"), **ASYNC)
    first = worker_name()
    job = importer.jobs.claim(first, ["import"], 0, 10**12)
    assert job is not None
    with pytest.raises(KeyboardInterrupt):  # dies after storing b, before saying so
        ImportJob().run(CrashAfter(importer, job, first, JobTiming(), crash_at=2))
    expire_lease(importer, job.id)
    assert importer.job_runner().run_all() == 1
    resumed = importer.jobs.get(job.id)
    assert resumed is not None and resumed.state == COMPLETED and resumed.attempts == 2
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    manifest = body(call(importer, "GET", status))
    assert [item["count"] for item in manifest["output"]] == [2, 1]
    assert [item["count"] for item in manifest["error"]] == [1]
    assert patient_ids(importer) == ["i0", "i1", "i2"]
    assert body(call(importer, "GET", "Patient/i2"))["meta"]["versionId"] == "2"
