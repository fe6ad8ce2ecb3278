"""The bulk loader (server.loading.loader) on real SQLite and PostgreSQL, with real workers."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from hygeia.fhir.datetime import format_instant
from hygeia.fhir.resources import stamp
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.parameters import default_registry
from hygeia.server import FhirService
from hygeia.server.loading.loader import Loader, LoadError, LoadReport
from hygeia.server.loading.prepare import Prepared, prepare_line, restamp
from hygeia.store import Repository, open_repository
from hygeia.store.base import HistoryQuery
from hygeia.store.schema import INDEX_TABLES, lookup_indexes
from hygeia.store.sql import prepare_rows
from tests.helpers import FIXTURES, body, call, synthea_bundle

URN = re.compile(r'"reference":"urn:uuid:([0-9a-fA-F-]{36})"')


def synthea_lines(name: str = "001") -> list[bytes]:
    """A Synthea transaction Bundle as NDJSON lines: ids from the fullUrls, and
    ``urn:uuid:`` references rewritten to ``Type/id`` (a bulk export's shape)."""
    bundle = synthea_bundle(name)
    types = {e["fullUrl"].removeprefix("urn:uuid:"): e["resource"]["resourceType"]
             for e in bundle["entry"]}
    lines = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        resource["id"] = entry["fullUrl"].removeprefix("urn:uuid:")
        text = URN.sub(lambda m: f'"reference":"{types[m.group(1)]}/{m.group(1)}"',
                       orjson.dumps(resource).decode())
        lines.append(text.encode())
    return lines


def load(service: FhirService, lines: list[bytes], *, workers: int = 0, upsert: bool = False,
         source: str = "test.ndjson", **options: Any) -> tuple[LoadReport, list[LoadError]]:
    errors: list[LoadError] = []
    with Loader(service, workers=workers, upsert=upsert, on_error=errors.append,
                **options) as loader:
        loader.load_lines(source, lines)
    return loader.report, errors


def index_snapshot(repository: Repository) -> Counter[tuple[Any, ...]]:
    """Every index row, keyed by its owner's (type, id) instead of the internal key."""
    rows: Counter[tuple[Any, ...]] = Counter()
    with repository.reader() as session:
        for table, columns in INDEX_TABLES.items():
            found = session.execute(  # type: ignore[attr-defined]
                f"SELECT r.res_type, r.res_id, t.h_param, {', '.join(f't.{c}' for c in columns)} "
                f"FROM {table} t JOIN resource r ON r.pk = t.res_pk").fetchall()
            rows.update((table, *row) for row in found)
    return rows


def current_contents(repository: Repository) -> dict[tuple[str, str], dict[str, Any]]:
    """The current content of every resource, without meta (versions and times differ)."""
    with repository.reader() as session:
        found = session.execute(  # type: ignore[attr-defined]
            "SELECT v.res_type, v.res_id, v.content FROM resource r "
            "JOIN resource_version v ON v.seq = r.seq").fetchall()
    contents = {}
    for kind, id, content in found:
        resource = orjson.loads(bytes(content))
        resource.pop("meta")
        contents[(kind, id)] = resource
    return contents


def test_index_rows_equal_the_ordinary_write_path(service: FhirService,
                                                  repository: Repository) -> None:
    lines = synthea_lines("001")
    report, errors = load(service, lines, workers=2, batch_size=100)
    assert errors == [] and report.resources == len(lines)
    loaded = index_snapshot(repository)
    assert sum(loaded.values()) > 1000
    for line in lines:  # the same resources again through PUT: the rows must not change
        resource = orjson.loads(line)
        path = f"{resource['resourceType']}/{resource['id']}"
        assert call(service, "PUT", path, resource).status == 200
    assert index_snapshot(repository) == loaded


def test_prepared_rows_are_index_resource_rows(service: FhirService) -> None:
    """What a worker prepares is exactly ``index_resource`` of the stamped resource."""
    for number, line in enumerate(synthea_lines("006"), start=1):
        item = prepare_line(number, line, service.registry)
        assert isinstance(item, Prepared) and item.tables is not None
        resource = orjson.loads(line)
        expected = stamp(resource, resource["id"], 1, item.last_updated)
        assert item.content == expected
        rows = prepare_rows(resource["resourceType"], index_resource(resource, service.registry))
        assert item.tables == rows.tables


def test_restamp_equals_stamp() -> None:
    meta = {"lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"code": "t"}], "versionId": "7"}
    resource = {"resourceType": "Patient", "id": "x", "meta": meta, "active": True}
    item = prepare_line(1, orjson.dumps(resource), default_registry())
    assert isinstance(item, Prepared)
    again = restamp(item, 12, 1_700_000_000_123_456)
    assert again == stamp(dict(resource), "x", 12, 1_700_000_000_123_456)
    assert orjson.loads(again)["meta"]["lastUpdated"] == format_instant(1_700_000_000_123_456)


def test_loaded_resources_are_found_by_search(service: FhirService) -> None:
    lines = synthea_lines("001")
    report, _ = load(service, lines, workers=2)
    assert report.resources == len(lines)
    patient = next(orjson.loads(line) for line in lines if b'"Patient"' in line[:30])
    family = patient["name"][0]["family"]
    found = body(call(service, "GET", f"Patient?family={family}&birthdate={patient['birthDate']}"))
    assert [e["resource"]["id"] for e in found["entry"]] == [patient["id"]]
    heights = body(call(service, "GET",
                        f"Observation?patient=Patient/{patient['id']}&code=8302-2&_count=500"))
    assert heights["total"] > 0
    assert report.by_type["Observation"] == sum(b'"resourceType":"Observation"' in line
                                                for line in lines)


def test_upsert_twice_gives_version_two_and_no_duplicates(service: FhirService,
                                                          repository: Repository) -> None:
    lines = synthea_lines("042")
    first, _ = load(service, lines, workers=2, upsert=True)
    second, errors = load(service, lines, workers=2, upsert=True)
    assert errors == [] and first.resources == second.resources == len(lines)
    patient = next(orjson.loads(line) for line in lines if b'"Patient"' in line[:30])
    read = body(call(service, "GET", f"Patient/{patient['id']}"))
    assert read["meta"]["versionId"] == "2"
    assert body(call(service, "GET", "Patient?_summary=count"))["total"] == 1
    history = body(call(service, "GET", f"Patient/{patient['id']}/_history"))
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "PUT"]
    with repository.reader() as session:
        versions = session.history(HistoryQuery("Patient", patient["id"]))
    assert versions[0].last_updated > versions[1].last_updated


def test_without_upsert_an_existing_id_is_a_line_error(service: FhirService) -> None:
    call(service, "PUT", "Patient/dup-1", {"resourceType": "Patient", "id": "dup-1"})
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"dup-{n}"}) for n in (1, 2, 3)]
    lines.append(lines[1])  # loaded earlier in the same load
    report, errors = load(service, lines, workers=0, source="dups.ndjson")
    assert report.resources == 2 and report.errors == 2
    assert [(e.source, e.line) for e in errors] == [("dups.ndjson", 1), ("dups.ndjson", 4)]
    assert "Patient/dup-1 already exists; load with --upsert" in errors[0].message
    assert body(call(service, "GET", "Patient/dup-1"))["meta"]["versionId"] == "1"
    assert body(call(service, "GET", "Patient/dup-2"))["meta"]["versionId"] == "1"


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_lines_are_errors_with_line_numbers(service: FhirService, workers: int) -> None:
    lines = (FIXTURES / "ndjson" / "mixed.ndjson").read_bytes().splitlines(keepends=True)
    report, errors = load(service, lines, workers=workers, source="mixed.ndjson")
    assert report.resources == 4 and report.errors == 3
    assert report.by_type == {"Patient": 2, "Observation": 2}
    by_line = {e.line: e.message for e in errors}
    assert sorted(by_line) == [4, 6, 7]
    assert by_line[4].startswith("not JSON")
    assert "Patient.birthDate" in by_line[6] and "'never'" in by_line[6]
    assert "JSON object" in by_line[7]
    assert str(errors[0]).startswith("mixed.ndjson:")
    assert report.first_errors == errors
    found = body(call(service, "GET", "Observation?subject=Patient/load-p2"))
    assert found["total"] == 1 and found["entry"][0]["resource"]["meta"]["versionId"] == "1"
    assert call(service, "GET", "Patient/load-p1").status == 200


def test_workers_and_inline_store_the_same(service: FhirService,
                                           repository: Repository) -> None:
    lines = synthea_lines("006")
    load(service, lines, workers=0)
    inline_rows, inline_contents = index_snapshot(repository), current_contents(repository)
    report, errors = load(service, lines, workers=2, upsert=True, batch_size=64, chunk_lines=20)
    assert errors == [] and report.resources == len(lines)
    assert index_snapshot(repository) == inline_rows
    assert current_contents(repository) == inline_contents


def test_custom_search_parameter_is_indexed_by_workers(service: FhirService) -> None:
    parameter = {"resourceType": "SearchParameter", "id": "load-nickname",
                 "url": "http://example.org/SearchParameter/load-nickname", "name": "nickname",
                 "status": "active", "description": "A patient's nickname",
                 "code": "nickname", "base": ["Patient"], "type": "string",
                 "expression": "Patient.name.where(use = 'nickname').given"}
    assert call(service, "PUT", "SearchParameter/load-nickname", parameter).status == 201
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"nick-{n}",
                           "name": [{"use": "nickname", "given": [f"Bunny{n}"]}]})
             for n in range(30)]
    report, _ = load(service, lines, workers=2, chunk_lines=4)
    assert report.resources == 30
    found = body(call(service, "GET", "Patient?nickname=bunny7"))
    assert [e["resource"]["id"] for e in found["entry"]] == ["nick-7"]


def test_search_parameter_in_the_load_takes_effect(service: FhirService) -> None:
    parameter = {"resourceType": "SearchParameter", "id": "load-city",
                 "url": "http://example.org/SearchParameter/load-city", "name": "load-city",
                 "status": "active", "description": "City", "code": "load-city",
                 "base": ["Patient"], "type": "string", "expression": "Patient.address.city"}
    patients = [orjson.dumps({"resourceType": "Patient", "id": f"city-{n}",
                              "address": [{"city": f"Town{n}"}]}) for n in range(40)]
    report, errors = load(service, [orjson.dumps(parameter), *patients], workers=2,
                          chunk_lines=3)
    assert errors == [] and report.resources == 41
    assert report.by_type["SearchParameter"] == 1
    for n in (0, 20, 39):  # prepared before the parameter took effect, or after
        found = body(call(service, "GET", f"Patient?load-city=town{n}&_count=100"))
        assert f"city-{n}" in [e["resource"]["id"] for e in found["entry"]]
    report, errors = load(service, [orjson.dumps(parameter)], workers=0)
    assert report.resources == 0 and "already exists" in errors[0].message


def test_an_unusable_search_parameter_is_a_line_error(service: FhirService) -> None:
    broken = {"resourceType": "SearchParameter", "url": "http://example.org/sp/broken",
              "name": "broken", "status": "active", "description": "x", "code": "broken",
              "base": ["Patient"], "type": "special", "expression": "Patient.name"}
    report, errors = load(service, [orjson.dumps(broken)], workers=0)
    assert report.resources == 0 and errors[0].line == 1
    assert "cannot be searched" in errors[0].message


def test_a_dead_worker_costs_speed_not_data(service: FhirService) -> None:
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"dw-{n}"}) for n in range(600)]
    with Loader(service, workers=2, upsert=False, chunk_lines=10) as loader:
        loader.load_lines("first.ndjson", lines[:100])
        worker = loader._pool._workers[0].process  # type: ignore[union-attr]
        worker.kill()
        worker.wait()
        loader.load_lines("second.ndjson", lines[100:])
    assert loader.report.resources == 600 and loader.report.errors == 0
    assert body(call(service, "GET", "Patient?_summary=count"))["total"] == 600


def test_an_unreadable_source_is_one_error_and_what_was_read_loads(service: FhirService) -> None:
    def broken() -> Any:
        yield orjson.dumps({"resourceType": "Patient", "id": "before-break"})
        raise OSError("connection reset")

    report, errors = load(service, broken(), workers=0, source="http://example.org/x.ndjson")
    assert report.resources == 1
    assert errors == [LoadError("http://example.org/x.ndjson", 0,
                                "could not be read to the end after line 1: connection reset")]


def test_resources_without_ids_get_server_ids(service: FhirService) -> None:
    lines = [orjson.dumps({"resourceType": "Patient", "gender": "other"})] * 3
    report, _ = load(service, lines, workers=0)
    found = body(call(service, "GET", "Patient?gender=other"))
    assert report.resources == 3 and found["total"] == 3
    assert len({e["resource"]["id"] for e in found["entry"]}) == 3
    history = body(call(service, "GET", "Patient/_history"))
    assert {e["request"]["method"] for e in history["entry"]} == {"POST"}


def test_progress_reports_resources_stored(service: FhirService) -> None:
    seen: list[int] = []
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"pr-{n}"}) for n in range(25)]
    with Loader(service, workers=0, upsert=False, on_progress=seen.append,
                batch_size=10) as loader:
        loader.load_lines("p.ndjson", lines)
    assert seen == [10, 20, 25]
    assert "Loaded 25 resources" in loader.report.summary()


def test_a_closed_loader_refuses_more_lines(service: FhirService) -> None:
    loader = Loader(service, workers=0, upsert=False)
    assert loader.close().resources == 0
    with pytest.raises(RuntimeError, match="closed"):
        loader.load_lines("late.ndjson", [b"{}"])


def test_kill_mid_load_leaves_whole_batches(tmp_path: Path) -> None:
    """A load killed part-way keeps what committed, and it is consistent."""
    db = _killed_after_first_batch(tmp_path, bulk=False)
    with open_repository(f"sqlite:///{db}", migrate=True) as repository, \
            repository.reader() as session:  # migrate: see _killed_after_first_batch
        def count(sql: str) -> int:
            return int(session.execute(sql).fetchone()[0])  # type: ignore[attr-defined]

        resources = count("SELECT COUNT(*) FROM resource")
        assert resources >= 500 and resources % 500 == 0
        assert count("SELECT COUNT(*) FROM resource_version") == resources
        assert count("SELECT COUNT(*) FROM resource r JOIN resource_version v "
                     "ON v.seq = r.seq") == resources
        assert count("SELECT COUNT(DISTINCT res_pk) FROM string_index") == resources
        assert count("SELECT COUNT(*) FROM string_index s LEFT JOIN resource r "
                     "ON r.pk = s.res_pk WHERE r.pk IS NULL") == 0


def test_the_same_id_twice_in_one_batch_with_upsert(service: FhirService) -> None:
    first = orjson.dumps({"resourceType": "Patient", "id": "twice", "gender": "male"})
    second = orjson.dumps({"resourceType": "Patient", "id": "twice", "gender": "female"})
    report, errors = load(service, [first, second], workers=0, upsert=True)
    assert errors == [] and report.resources == 2
    read = body(call(service, "GET", "Patient/twice"))
    assert read["meta"]["versionId"] == "2" and read["gender"] == "female"
    assert body(call(service, "GET", "Patient?gender=male"))["total"] == 0
    assert body(call(service, "GET", "Patient?gender=female"))["total"] == 1
    assert len(body(call(service, "GET", "Patient/twice/_history"))["entry"]) == 2


def test_a_deleted_resource_is_loaded_as_its_next_version(service: FhirService) -> None:
    call(service, "PUT", "Patient/was-deleted", {"resourceType": "Patient", "id": "was-deleted"})
    call(service, "DELETE", "Patient/was-deleted")
    line = orjson.dumps({"resourceType": "Patient", "id": "was-deleted", "active": True})
    report, errors = load(service, [line], workers=0)
    assert errors == [] and report.resources == 1
    read = body(call(service, "GET", "Patient/was-deleted"))
    assert read["meta"]["versionId"] == "3" and read["active"] is True
    assert body(call(service, "GET", "Patient?active=true"))["total"] == 1


def lookup_index_state(repository: Repository) -> tuple[set[str], set[str]]:
    """(lookup indexes present, lookup indexes with planner statistics) on SQLite."""
    names = {name for name, _ in lookup_indexes()}
    with repository.reader() as session:
        execute = session.execute  # type: ignore[attr-defined]
        present = {row[0] for row in execute("SELECT name FROM sqlite_master "
                                             "WHERE type = 'index'").fetchall()}
        counted = {row[0] for row in execute("SELECT idx FROM sqlite_stat1").fetchall()}
    return names & present, names & counted


def test_deferred_indexes_store_what_the_normal_path_stores(service: FhirService,
                                                          repository: Repository,
                                                          tmp_path: Path) -> None:
    """Loading into an empty database with the lookup indexes built at the end gives the
    same rows and the same search answers as the normal path, and the indexes exist."""
    lines = synthea_lines("001")
    report, errors = load(service, lines, workers=2, batch_size=100, bulk=True)
    assert errors == [] and report.resources == len(lines)
    with open_repository(f"sqlite:///{tmp_path / 'normal.db'}") as normal:
        normal_service = FhirService(normal)
        load(normal_service, lines, workers=0, batch_size=100)
        assert index_snapshot(repository) == index_snapshot(normal)
        for query in ("Observation?code=http://loinc.org|8302-2",
                      "Observation?value-quantity=gt100",
                      "Encounter?date=ge2015", "Patient?name=a", "Claim?patient:missing=false",
                      "Observation?combo-code-value-quantity=http://loinc.org|8302-2$gt100",
                      "Condition?code:text=polyp", "Procedure?subject:Patient.gender=male"):
            found = body(call(service, "GET", query + "&_count=1000"))
            expected = body(call(normal_service, "GET", query + "&_count=1000"))
            assert found["total"] == expected["total"] > 0
            assert [e["fullUrl"] for e in found.get("entry", [])] == [
                e["fullUrl"] for e in expected.get("entry", [])]
    if repository.dialect == "sqlite":
        present, counted = lookup_index_state(repository)
        assert present == counted == {name for name, _ in lookup_indexes()}


def test_deferred_indexes_only_for_an_empty_database(service: FhirService,
                                                     repository: Repository) -> None:
    load(service, synthea_lines("001")[:10])
    with repository.bulk_load() as deferred:
        assert deferred is False
        if repository.dialect == "sqlite":
            assert lookup_index_state(repository)[0] == {name for name, _ in lookup_indexes()}


def test_a_load_killed_with_deferred_indexes_gets_them_at_the_next_open(tmp_path: Path
                                                                        ) -> None:
    db = _killed_after_first_batch(tmp_path, bulk=True)
    with open_repository(f"sqlite:///{db}", migrate=True) as repository:
        present, counted = lookup_index_state(repository)
        assert present == counted == {name for name, _ in lookup_indexes()}
        page = body(call(FhirService(repository), "GET", "Patient?name=kill1"))
        assert page["total"] >= 1


def _killed_after_first_batch(tmp_path: Path, *, bulk: bool) -> Path:
    """A load of 20,000 Patients in another process, SIGKILLed once its first batch of 500
    has committed; returns its SQLite database.

    The loading process knows only the core's tables; this test process may know more
    (an installed pillar imported earlier registers its own migration stream), so the
    tests reopen the database with ``migrate=True``, as ``hygeia serve --migrate`` would.
    """
    import signal
    import subprocess
    import sys

    db = tmp_path / "killed.db"
    lines = b"\n".join(orjson.dumps({"resourceType": "Patient", "id": f"k-{n}",
                                     "name": [{"family": f"Kill{n}"}]}) for n in range(20_000))
    (tmp_path / "big.ndjson").write_bytes(lines)
    script = (
        "from hygeia.server import FhirService\n"
        "from hygeia.server.loading.loader import Loader\n"
        "from hygeia.store import open_repository\n"
        f"repository = open_repository('sqlite:///{db}')\n"
        "def progress(n):\n"
        "    print(n, flush=True)\n"
        "with Loader(FhirService(repository), workers=1, upsert=False, batch_size=500,\n"
        f"            on_progress=progress, bulk={bulk}) as loader:\n"
        f"    loader.load_lines('big', open('{tmp_path / 'big.ndjson'}', 'rb'))\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert int(process.stdout.readline()) == 500  # the first batch has committed
    process.send_signal(signal.SIGKILL)
    process.wait()
    return db
