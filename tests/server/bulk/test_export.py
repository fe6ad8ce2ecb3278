"""Bulk Data $export in process: kick-off checks, the job's output, time and resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hygeia.fhir.outcome import BadRequest, NotFound
from hygeia.server import FhirResponse, FhirService, JobSettings, Settings
from hygeia.server.bulk.export_job import ExportJob
from hygeia.server.jobs.run import JobTiming
from hygeia.store import Repository
from hygeia.store.jobs import COMPLETED, worker_name
from tests.helpers import CrashAfter, body, call, expire_lease

ASYNC = {"prefer_async": True}


@pytest.fixture
def bulk(repository: Repository, tmp_path: Path) -> Iterator[FhirService]:
    """Two patients with observations, a practitioner, and a group holding the first."""
    service = FhirService(repository, Settings(jobs=JobSettings(files_dir=str(tmp_path / "files"))))
    put(service, {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Who"}]})
    for patient in ("p1", "p2"):
        put(service, {"resourceType": "Patient", "id": patient, "gender": "female"})
        for number, status in enumerate(("final", "preliminary", "final")):
            put(service, {"resourceType": "Observation", "id": f"{patient}-o{number}",
                          "status": status, "code": {"text": "weight"},
                          "subject": {"reference": f"Patient/{patient}"},
                          "performer": [{"reference": "Practitioner/dr1"}]})
    put(service, {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                  "member": [{"entity": {"reference": "Patient/p1"}},
                             {"entity": {"reference": "Patient/p2"}, "inactive": True}]})
    yield service
    service.close()


def put(service: FhirService, resource: dict[str, Any]) -> None:
    response = call(service, "PUT", f"{resource['resourceType']}/{resource['id']}", resource)
    assert response.status in (200, 201), body(response)


def export(service: FhirService, path: str = "$export", **kwargs: Any) -> dict[str, Any]:
    """Kick off, run the job, and return the manifest."""
    started = call(service, "GET", path, **ASYNC, **kwargs)
    assert started.status == 202
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    assert status.startswith("_job/")
    assert call(service, "GET", status).status == 202
    assert service.job_runner().run_all() == 1
    done = call(service, "GET", status)
    assert done.status == 200 and done.media_type == "application/json"
    assert "Expires" in done.headers
    return body(done)


def download(service: FhirService, url: str) -> list[dict[str, Any]]:
    response = call(service, "GET", url.removeprefix("http://test/fhir/"))
    assert response.status == 200 and response.stream is not None
    assert response.media_type == "application/fhir+ndjson"
    data = b"".join(response.stream)
    assert int(response.headers["Content-Length"]) == len(data)
    return [orjson.loads(line) for line in data.splitlines()]


def exported(service: FhirService, manifest: dict[str, Any]) -> dict[str, list[str]]:
    """type -> sorted ids, checking each file holds one type and its count is right."""
    found: dict[str, list[str]] = {}
    for item in manifest["output"]:
        lines = download(service, item["url"])
        assert len(lines) == item["count"]
        assert {line["resourceType"] for line in lines} == {item["type"]}
        found.setdefault(item["type"], []).extend(line["id"] for line in lines)
    return {kind: sorted(ids) for kind, ids in found.items()}


def test_system_export_writes_every_current_resource(bulk: FhirService) -> None:
    manifest = export(bulk)
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert manifest["request"] == "http://test/fhir/$export"
    assert exported(bulk, manifest) == {
        "Group": ["g1"], "Observation": sorted(f"{p}-o{n}" for p in ("p1", "p2")
                                               for n in range(3)),
        "Patient": ["p1", "p2"], "Practitioner": ["dr1"]}
    stored = body(call(bulk, "GET", "Patient/p1"))
    lines = download(bulk, next(i["url"] for i in manifest["output"] if i["type"] == "Patient"))
    assert lines[0] == stored  # byte-for-byte the stored version, meta included


def test_type_since_elements_and_type_filter(bulk: FhirService) -> None:
    manifest = export(bulk, query=[("_type", "Observation,Patient"),
                                   ("_typeFilter", "Observation?status=final&subject=p2"),
                                   ("_elements", "Observation.status,gender")])
    found = exported(bulk, manifest)
    assert found == {"Observation": ["p2-o0", "p2-o2"], "Patient": ["p1", "p2"]}
    observation = download(bulk, manifest["output"][0]["url"])[0]
    # code is mandatory (1..1): the IG omits only unlisted, non-mandatory elements
    assert set(observation) == {"resourceType", "id", "meta", "status", "code"}
    assert observation["meta"]["tag"][-1]["code"] == "SUBSETTED"
    later = body(call(bulk, "GET", "Observation/p1-o1"))["meta"]["lastUpdated"]
    since = export(bulk, query=[("_since", later)])
    assert exported(bulk, since) == {
        "Group": ["g1"], "Observation": ["p1-o1", "p1-o2", "p2-o0", "p2-o1", "p2-o2"],
        "Patient": ["p2"]}


def test_patient_and_group_exports_follow_the_compartment(bulk: FhirService) -> None:
    everyone = exported(bulk, export(bulk, "Patient/$export"))
    assert "Practitioner" not in everyone  # Group is in: Group.member names patients
    assert everyone["Patient"] == ["p1", "p2"] and len(everyone["Observation"]) == 6
    group = exported(bulk, export(bulk, "Group/g1/$export"))  # p2 is an inactive member
    assert group == {"Group": ["g1"], "Observation": ["p1-o0", "p1-o1", "p1-o2"],
                     "Patient": ["p1"]}
    chosen = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/p2"}},
        {"name": "_type", "valueString": "Observation"}]}
    started = call(bulk, "POST", "Patient/$export", chosen, **ASYNC)
    assert started.status == 202
    bulk.job_runner().run_all()
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    assert exported(bulk, body(call(bulk, "GET", status))) == {
        "Observation": ["p2-o0", "p2-o1", "p2-o2"]}


def test_export_describes_the_kick_off_instant(bulk: FhirService) -> None:
    started = call(bulk, "GET", "$export", query=[("_type", "Observation,Patient")], **ASYNC)
    put(bulk, {"resourceType": "Patient", "id": "p1", "gender": "male"})  # after: old version
    put(bulk, {"resourceType": "Patient", "id": "p3"})  # created after: left out
    assert call(bulk, "DELETE", "Observation/p1-o0").status in (200, 204)  # deleted after
    bulk.job_runner().run_all()
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    manifest = body(call(bulk, "GET", status))
    assert exported(bulk, manifest)["Patient"] == ["p1", "p2"]
    patients = download(bulk, next(i["url"] for i in manifest["output"]
                                   if i["type"] == "Patient"))
    assert {p["id"]: p["gender"] for p in patients} == {"p1": "female", "p2": "female"}
    assert "p1-o0" in exported(bulk, manifest)["Observation"]


def test_files_split_at_the_size_limit(repository: Repository, tmp_path: Path) -> None:
    service = FhirService(repository, Settings(jobs=JobSettings(files_dir=str(tmp_path),
                                                                export_file_bytes=600)))
    for number in range(12):
        put(service, {"resourceType": "Patient", "id": f"s{number}", "gender": "other"})
    manifest = export(service)
    parts = [item for item in manifest["output"] if item["type"] == "Patient"]
    assert len(parts) > 2 and sum(p["count"] for p in parts) == 12
    assert exported(service, manifest) == {"Patient": sorted(f"s{n}" for n in range(12))}


# (rows per query, rows between checkpoints, the checkpoint to crash at): with 4 and 4
# the checkpoints fall at the ends of queries (7 in all), with 5 and 2 in the middle of
# a query that is still streaming (11 in all)
RESUME_CASES = [(4, 4, n) for n in range(1, 8)] + [(5, 2, n) for n in range(1, 12)]


@pytest.mark.parametrize(("snapshot", "check", "crash_at"), RESUME_CASES)
def test_a_resumed_export_writes_each_line_once(repository: Repository, tmp_path: Path,
                                                snapshot: int, check: int, crash_at: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint every few rows, so crashes land mid-file, at file ends, between types
    and while the database is still sending a query's rows."""
    from hygeia.server.bulk import export_job

    monkeypatch.setattr(export_job, "SNAPSHOT_ROWS", snapshot)
    monkeypatch.setattr(export_job, "CHECK_ROWS", check)
    monkeypatch.setattr(export_job, "CHECKPOINT_SECONDS", 0.0)
    service = FhirService(repository, Settings(jobs=JobSettings(files_dir=str(tmp_path),
                                                                export_file_bytes=500)))
    for number in range(9):
        put(service, {"resourceType": "Patient", "id": f"r{number}"})
        put(service, {"resourceType": "Device", "id": f"d{number}"})
    started = call(service, "GET", "$export", **ASYNC)
    first = worker_name()
    job = service.jobs.claim(first, ["export"], 0, 10**12)
    assert job is not None
    with pytest.raises(KeyboardInterrupt):
        ExportJob().run(CrashAfter(service, job, first, JobTiming(), crash_at=crash_at))
    # the lease is still held by the "dead" worker: expire it, as time would
    expire_lease(service, job.id)
    assert service.job_runner().run_all() == 1
    resumed = service.jobs.get(job.id)
    assert resumed is not None and resumed.state == COMPLETED and resumed.attempts == 2
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    found = exported(service, body(call(service, "GET", status)))
    assert found == {"Device": sorted(f"d{n}" for n in range(9)),
                     "Patient": sorted(f"r{n}" for n in range(9))}


def test_cancel_removes_the_files_and_the_status(bulk: FhirService) -> None:
    manifest = export(bulk)
    job_id = manifest["output"][0]["url"].split("/")[-2]
    folder = bulk.files.job_folder(job_id)
    assert any(folder.iterdir())
    cancelled = call(bulk, "DELETE", f"_job/{job_id}")
    assert cancelled.status == 202
    assert not folder.exists()
    with pytest.raises(NotFound):
        call(bulk, "GET", f"_job/{job_id}")
    with pytest.raises(NotFound):
        download(bulk, manifest["output"][0]["url"])


def test_cancel_while_queued_means_it_never_runs(bulk: FhirService) -> None:
    started = call(bulk, "GET", "$export", **ASYNC)
    status = started.headers["Content-Location"].removeprefix("http://test/fhir/")
    assert call(bulk, "DELETE", status).status == 202
    assert bulk.job_runner().run_all() == 0


@pytest.mark.parametrize(("path", "query", "kwargs", "where"), [
    ("$export", [], {"prefer_async": False}, "Prefer"),
    ("$export", [("_outputFormat", "text/csv")], ASYNC, "_outputFormat"),
    ("$export", [("_type", "Patient,Nonsense")], ASYNC, "_type"),
    ("Patient/$export", [("_type", "Practitioner")], ASYNC, "_type"),
    ("$export", [("_since", "2024-01-01")], ASYNC, "_since"),
    ("$export", [("_since", "yesterday")], ASYNC, "_since"),
    ("$export", [("_since", "2999-01-01T00:00:00Z")], ASYNC, "_since"),
    ("$export", [("_typeFilter", "Observation?nonsense=1")], ASYNC, "_typeFilter"),
    ("$export", [("_typeFilter", "Observation?_sort=date")], ASYNC, "_typeFilter"),
    ("$export", [("_typeFilter", "status=final")], ASYNC, "_typeFilter"),
    ("$export", [("_elements", "a b")], ASYNC, "_elements"),
    ("$export", [("includeAssociatedData", "x")], ASYNC, "includeAssociatedData"),
    ("$export", [("patient", "Patient/p1")], ASYNC, "patient"),
])
def test_bad_kick_off_is_a_400_naming_the_parameter(bulk: FhirService, path: str,
                                                    query: list[tuple[str, str]],
                                                    kwargs: dict[str, Any], where: str) -> None:
    with pytest.raises(BadRequest) as raised:
        call(bulk, "GET", path, query=query, **kwargs)
    assert raised.value.issues[0].expression == where
    assert bulk.job_runner().run_all() == 0  # nothing was queued


def test_unknown_group_is_404_and_lenient_handling_warns(bulk: FhirService) -> None:
    with pytest.raises(NotFound):
        call(bulk, "GET", "Group/nobody/$export", **ASYNC)
    manifest = export(bulk, query=[("_type", "Practitioner"), ("includeAssociatedData", "x")],
                      prefer_lenient=True)
    assert exported(bulk, manifest) == {"Practitioner": ["dr1"]}
    [error] = manifest["error"]
    outcome = download(bulk, error["url"])[0]
    assert "includeAssociatedData" in outcome["issue"][0]["diagnostics"]


def test_routes_refuse_other_methods_and_types(bulk: FhirService) -> None:
    from hygeia.fhir.outcome import MethodNotAllowed

    with pytest.raises(MethodNotAllowed):
        call(bulk, "DELETE", "$export")
    with pytest.raises(NotFound):
        call(bulk, "GET", "Observation/$export", **ASYNC)
    with pytest.raises(NotFound):
        call(bulk, "GET", "_job/unknown")
    response: FhirResponse = call(bulk, "GET", "metadata")
    rest = body(response)["rest"][0]
    assert {"export", "import"} <= {operation["name"] for operation in rest["operation"]}
    by_type = {entry["type"]: entry for entry in rest["resource"]}
    for kind in ("Patient", "Group"):
        assert "export" in {operation["name"] for operation in by_type[kind]["operation"]}


def test_a_search_parameter_written_elsewhere_reaches_this_process(
        repository: Repository, tmp_path: Path) -> None:
    """Two services on one database stand for two serving processes."""
    writer = FhirService(repository, Settings(jobs=JobSettings(files_dir=str(tmp_path))))
    other = FhirService(repository, Settings(jobs=JobSettings(files_dir=str(tmp_path))))
    assert other.refresh_parameters() is False  # nothing new yet
    put(writer, {"resourceType": "SearchParameter", "id": "nick", "status": "active",
                 "url": "http://example.org/SearchParameter/nick", "name": "nick",
                 "description": "Nickname", "code": "nick", "base": ["Patient"],
                 "type": "string", "expression": "Patient.name.given"})
    put(writer, {"resourceType": "Patient", "id": "n1", "name": [{"given": ["Bart"]}]})
    with pytest.raises(BadRequest):
        call(other, "GET", "Patient?nick=bart", prefer_strict=True)
    assert other.refresh_parameters() is True
    found = body(call(other, "GET", "Patient?nick=bart", prefer_strict=True))
    assert [entry["resource"]["id"] for entry in found["entry"]] == ["n1"]
    assert call(writer, "DELETE", "SearchParameter/nick").status in (200, 204)
    assert other.refresh_parameters() is True
    with pytest.raises(BadRequest):
        call(other, "GET", "Patient?nick=bart", prefer_strict=True)
