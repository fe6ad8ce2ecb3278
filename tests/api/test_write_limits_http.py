"""Limits on writes that build more than they receive (issue 13, items 1, 11 and 15).

Each test starts a real ``hygeia serve`` on SQLite and on PostgreSQL and
watches the memory of its serving worker (the one child process of the
command; offload helpers are the worker's own children) in /proc.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hygeia.store.sqlite.repository import WRITER_CACHE_MB
from tests.api.test_limits_and_crash import amplified_bundle
from tests.conftest import ServerProcess
from tests.helpers import patient, unique

FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MB = 1024 * 1024
DEFAULT_MAX_ENTRIES = 10_000

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")


def serving_worker(server: ServerProcess) -> int:
    """The pid of the process that answers requests (``hygeia serve``'s only child)."""
    pid = server.process.pid
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    assert len(children) == 1, children
    return children[0]


def memory(pid: int, field: str = "VmRSS") -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (the peak so far) of ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def outcome(response: httpx.Response, status: int, text: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert any(text in issue["diagnostics"] for issue in body["issue"]), body
    return body


def create(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post(resource["resourceType"], content=orjson.dumps(resource),
                           headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def fhirpath_patch(*operations: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": parts} for parts in operations]})


def operation(kind: str, path: str, **parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path},
            *({"name": name, **value} for name, value in parts.items())]


# --- item 1: the JSON Patch memory bomb ------------------------------------------------


def test_json_patch_copy_bomb_is_refused_at_once_without_growing_the_worker(
        database_url: str) -> None:
    """25 doubling copies (1 KB) used to take the worker past 13 GB; now the copy that
    passes the bound is refused (422 naming it) in well under a second, and the worker's
    peak memory stays within 100 MB of its size before."""
    server = ServerProcess(database_url)
    try:
        worker = serving_worker(server)
        stored = create(server.client, patient(unique()))
        before = memory(worker)
        bomb = [{"op": "copy", "from": "/name", "path": "/name/-"}] * 25
        started = time.monotonic()
        response = server.client.patch(f"Patient/{stored['id']}", content=orjson.dumps(bomb),
                                       headers=JSON_PATCH, timeout=10)
        elapsed = time.monotonic() - started
        body = outcome(response, 422, "would copy more than")
        assert body["issue"][0]["code"] == "too-costly"
        assert body["issue"][0]["expression"] == ["/11"]  # the 12th copy, by its pointer
        assert elapsed < 2
        assert memory(worker, "VmHWM") - before < 100 * MB
        current = server.client.get(f"Patient/{stored['id']}").json()
        assert current["meta"]["versionId"] == "1"
    finally:
        server.stop()


def test_patched_resources_are_bounded_by_the_body_limit(database_url: str) -> None:
    """A FHIRPath Patch that would grow a resource past --max-body-mb is 422, although
    both the resource and the patch were under it; --max-patch-operations is honoured."""
    server = ServerProcess(database_url, "--max-body-mb", "0.01", "--max-patch-operations",
                           "3")
    try:
        stored = create(server.client, patient(unique(), text={
            "status": "generated", "div": f"<div>{'x' * 6000}</div>"}))
        grow = operation("add", "Patient", name={"valueString": "name"},
                         value={"valueHumanName": {"family": "y" * 5000}})
        response = server.client.patch(f"Patient/{stored['id']}", content=fhirpath_patch(grow),
                                       headers=FHIR_JSON)
        body = outcome(response, 422, "over the 10,485-byte limit on patched resources")
        assert body["issue"][0]["expression"] == ["Parameters.parameter[0]"]
        small = operation("add", "Patient", name={"valueString": "gender"},
                          value={"valueCode": "other"})
        response = server.client.patch(f"Patient/{stored['id']}",
                                       content=fhirpath_patch(*[small] * 4), headers=FHIR_JSON)
        outcome(response, 422, "4 operations; at most 3")
        response = server.client.patch(f"Patient/{stored['id']}", content=fhirpath_patch(small),
                                       headers=FHIR_JSON)
        assert response.status_code == 200, response.text
        assert response.json()["gender"] == "other"
    finally:
        server.stop()


# --- item 15: FHIRPath Patch evaluates FHIRPath, or refuses -----------------------------


def test_fhirpath_patch_root_and_or_criteria(database_url: str) -> None:
    """Deleting the root answered 200 and changed nothing; ``where(a or b)`` deleted
    nothing although FHIRPath selects name[0]."""
    server = ServerProcess(database_url)
    try:
        stored = create(server.client, {"resourceType": "Patient", "name": [
            {"family": "F", "given": ["A"]}, {"family": "G", "given": ["B"]}]})
        url = f"Patient/{stored['id']}"
        response = server.client.patch(url, content=fhirpath_patch(
            operation("delete", "Patient")), headers=FHIR_JSON)
        body = outcome(response, 422, "is the resource itself")
        assert body["issue"][0]["expression"] == ["Parameters.parameter[0]"]
        response = server.client.patch(url, content=fhirpath_patch(
            operation("delete", "Patient.name.where(family='nomatch' or given='A')")),
            headers=FHIR_JSON)
        assert response.status_code == 200, response.text
        assert response.json()["name"] == [{"family": "G", "given": ["B"]}]
        response = server.client.patch(url, content=fhirpath_patch(
            operation("delete", "Patient.name.skip(1)")), headers=FHIR_JSON)
        assert outcome(response, 422, "does not support")["issue"][0]["code"] == \
            "not-supported"
        assert server.client.get(url).json()["meta"]["versionId"] == "2"
    finally:
        server.stop()


# --- item 11: batch and transaction size -----------------------------------------------


def bundle_of(entries: int, kind: str = "transaction") -> bytes:
    """``entries`` entries: whole Synthea patients (fresh urn:uuids), topped up with
    Patients."""
    bundle, size = amplified_bundle(entries // 273)
    bundle["entry"] += [{"fullUrl": f"urn:uuid:{unique()}", "resource": patient(unique()),
                         "request": {"method": "POST", "url": "Patient"}}
                        for _ in range(entries - size)]
    bundle["type"] = kind
    assert len(bundle["entry"]) == entries
    return orjson.dumps(bundle)


def test_bundles_over_the_entry_limit_are_413_before_any_is_processed(
        database_url: str) -> None:
    server = ServerProcess(database_url)
    try:
        for kind in ("transaction", "batch"):
            body = bundle_of(DEFAULT_MAX_ENTRIES + 1, kind)
            started = time.monotonic()
            response = server.client.post("", content=body, headers=FHIR_JSON)
            assert time.monotonic() - started < 5
            refused = outcome(response, 413, "$import")
            assert refused["issue"][0]["expression"] == ["Bundle.entry"]
        assert server.client.get("Patient", params={"_summary": "count"}).json()["total"] == 0
    finally:
        server.stop()


def test_largest_transaction_succeeds_and_its_memory_is_given_back(database_url: str) -> None:
    """After a transaction of the largest allowed size the worker is back within 100 MB
    of its size before the request within 5 s (it kept 110-160 MB more before the fix).

    The bound is held on a server whose caches are warm, the state a server is in for
    all but its first few large writes. On a cold server the first such transaction
    also loads what the worker loads lazily on its first write (definitions,
    validators), and on SQLite each of the first few fills the writer's page cache
    further, which is kept on purpose (up to ``WRITER_CACHE_MB``, then reused, never
    grown). Measured on SQLite (settled resident size after each 10,000-entry
    transaction, from 51 MB idle): 162, 241, 310, 325, 334, 342, 350 MB; so the first
    transactions keep 70-110 MB each while the cache fills, the later ones under 20 MB.
    So the test first writes such transactions until the database is larger than the
    page cache (one on PostgreSQL), then holds the next one to the issue's 100 MB."""
    server = ServerProcess(database_url, "--max-body-mb", "128")
    try:
        worker = serving_worker(server)
        warm_up(server)
        body = bundle_of(DEFAULT_MAX_ENTRIES)
        before = settled_memory(worker)
        started = time.monotonic()
        response = server.client.post("", content=body, headers=FHIR_JSON, timeout=300)
        answered = time.monotonic()
        assert response.status_code == 200, response.text[:500]
        assert len(response.json()["entry"]) == DEFAULT_MAX_ENTRIES
        print(f"{DEFAULT_MAX_ENTRIES} entries in {answered - started:.1f} s; worker "
              f"{before / MB:.0f} MB before, peak {memory(worker, 'VmHWM') / MB:.0f} MB")
        del response, body
        while memory(worker) - before > 100 * MB:
            assert time.monotonic() - answered < 5, (
                f"{memory(worker) / MB:.0f} MB 5 s after, {before / MB:.0f} MB before")
            time.sleep(0.1)
        print(f"worker {memory(worker) / MB:.0f} MB after {time.monotonic() - answered:.1f} s")
    finally:
        server.stop()


def warm_up(server: ServerProcess) -> None:
    """Largest transactions until the worker's caches are warm: one, and on SQLite as
    many as it takes to store more than the writer's page cache holds."""
    database = Path(server.db_url.removeprefix("sqlite:///"))
    for _ in range(10):
        response = server.client.post("", content=bundle_of(DEFAULT_MAX_ENTRIES),
                                      headers=FHIR_JSON, timeout=300)
        assert response.status_code == 200, response.text[:500]
        if not server.db_url.startswith("sqlite:///"):
            return
        if database.stat().st_size > WRITER_CACHE_MB * MB:
            return
    raise AssertionError(f"{database} stayed smaller than {WRITER_CACHE_MB} MB")


def settled_memory(pid: int) -> int:
    """``pid``'s resident size once the memory a previous request gave back is gone (it
    is given back a moment after the response): the size stops falling for a second,
    or 10 s have passed."""
    deadline = time.monotonic() + 10
    size = memory(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = memory(pid)
        if now >= size - MB:
            return now
        size = now
    return size


def test_results_of_get_entries_are_bounded_by_the_body_limit(database_url: str) -> None:
    """A 60-byte search entry can answer a thousand resources: a Bundle's GET entries may
    return at most --max-body-mb of resources in all (the batch entries beyond fail, a
    transaction fails whole)."""
    server = ServerProcess(database_url, "--max-body-mb", "0.05")
    try:
        for _ in range(10):
            create(server.client, patient(unique(), text={
                "status": "generated", "div": f"<div>{'x' * 2000}</div>"}))
        search = {"request": {"method": "GET", "url": "Patient?_count=100"}}
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [search] * 5}
        response = server.client.post("", content=orjson.dumps(batch), headers=FHIR_JSON)
        assert response.status_code == 200, response.text[:500]
        entries = response.json()["entry"]
        assert [e["response"]["status"] for e in entries] == ["200", "200", "422", "422",
                                                             "422"]
        refused = entries[2]["response"]["outcome"]["issue"][0]
        assert refused["code"] == "too-costly"
        assert "GET entries pass 52,428 bytes" in refused["diagnostics"]
        transaction = {**batch, "type": "transaction"}
        response = server.client.post("", content=orjson.dumps(transaction), headers=FHIR_JSON)
        body = outcome(response, 422, "GET entries pass")
        assert body["issue"][0]["expression"] == ["Bundle.entry[2]"]
    finally:
        server.stop()


def test_hygeia_load_takes_the_bundle_the_api_refuses(tmp_path: Path) -> None:
    """The 413 points to ``hygeia load``; it loads a Bundle file of any size."""
    path = tmp_path / "big.json"
    path.write_bytes(bundle_of(DEFAULT_MAX_ENTRIES + 1))
    database = f"sqlite:///{tmp_path}/load.db"
    result = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--db", database,
                             "--quiet", str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with sqlite3.connect(tmp_path / "load.db") as connection:
        stored = connection.execute("SELECT count(*) FROM resource").fetchone()
    assert stored[0] == DEFAULT_MAX_ENTRIES + 1
