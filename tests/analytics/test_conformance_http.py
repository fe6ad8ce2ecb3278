"""The official SQL on FHIR v2 suite over the real store on SQLite and PostgreSQL: each
file's resources are stored through a real ``hygeia serve`` (replacing the previous
file's), then every test's view runs through ``$viewdefinition-run`` and through
``hygeia view run`` (one process per suite file, one output file per view)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.analytics.conformance import Case, cases, check
from tests.conftest import BACKENDS, ServerProcess, backend_server

CASES = list(cases())
FHIR_JSON = {"Content-Type": "application/fhir+json"}


class Store:
    """A served database holding one suite file's resources at a time."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.file: str | None = None
        self.keys: list[str] = []

    def hold(self, case: Case) -> None:
        if self.file == case.file:
            return
        entries: list[dict[str, Any]] = [
            {"request": {"method": "DELETE", "url": key}} for key in self.keys
        ]
        # a resource without an id (fn_first.json) gets one: a store keeps none without
        resources = [{"id": f"unnamed{i}", **r} for i, r in enumerate(case.resources)]
        keys = [f"{r['resourceType']}/{r['id']}" for r in resources]
        entries += [
            {"resource": r, "request": {"method": "PUT", "url": key}}
            for r, key in zip(resources, keys, strict=True)
        ]
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        answer = self.server.client.post("", content=orjson.dumps(bundle), headers=FHIR_JSON)
        assert answer.status_code == 200, answer.text
        failed = [e["response"] for e in answer.json()["entry"]
                  if not e["response"]["status"].startswith(("200", "201", "204"))]
        assert not failed, failed
        self.file, self.keys = case.file, keys


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          analytics_installed: None) -> Iterator[Store]:
    with backend_server(request, tmp_path_factory, "sof") as process:
        yield Store(process)


def run_over_http(server: ServerProcess, case: Case
                  ) -> tuple[list[dict[str, Any]] | Exception, list[str] | None]:
    kind = "csv" if "expectColumns" in case.expected else "json"
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": case.view},
        {"name": "_format", "valueCode": kind}]}
    answer = server.client.post("$viewdefinition-run", content=orjson.dumps(body),
                                headers=FHIR_JSON)
    if answer.status_code != 200:
        assert answer.status_code in (400, 422), answer.text
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["diagnostics"]
        return RuntimeError(outcome["issue"][0]["diagnostics"]), None
    if kind == "csv":
        header = next(csv.reader(io.StringIO(answer.text)))
        return [], header
    return answer.json(), None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_official_case_over_the_store(store: Store, case: Case) -> None:
    store.hold(case)
    outcome, columns = run_over_http(store.server, case)
    failure = check(case, outcome, columns)
    assert failure is None, failure


FILES = sorted({c.file for c in CASES})


def run_cli(db_url: str, folder: Path, batch: list[Case], kind: str
            ) -> dict[str, tuple[list[dict[str, Any]] | Exception, list[str] | None]]:
    """One ``hygeia view run`` process for ``batch`` (one view file each)."""
    views = []
    for index, case in enumerate(batch):
        path = folder / f"v{index}.json"
        path.write_bytes(orjson.dumps(case.view))
        views.append(str(path))
    out = folder / kind
    done = subprocess.run(
        [sys.executable, "-m", "hygeia.cli.main", "view", "run", *views, "--db", db_url,
         "--format", kind, "--out-dir", str(out)],
        capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    outcomes: dict[str, tuple[list[dict[str, Any]] | Exception, list[str] | None]] = {}
    for index, case in enumerate(batch):
        failed = [line for line in done.stderr.splitlines()
                  if line.startswith(f"error: {views[index]}: ")]
        if failed:
            outcomes[case.id] = RuntimeError(failed[0]), None
        elif kind == "csv":
            text = (out / f"v{index}.csv").read_text()
            outcomes[case.id] = [], next(csv.reader(io.StringIO(text)))
        else:
            outcomes[case.id] = orjson.loads((out / f"v{index}.json").read_bytes()), None
    assert (done.returncode == 0) == all(
        not isinstance(o, Exception) for o, _ in outcomes.values()), done.stderr
    return outcomes


@pytest.mark.parametrize("file", FILES)
def test_official_file_through_the_cli(store: Store, file: str, tmp_path: Path) -> None:
    batch = [c for c in CASES if c.file == file]
    store.hold(batch[0])
    columns = [c for c in batch if "expectColumns" in c.expected]
    rows = [c for c in batch if "expectColumns" not in c.expected]
    outcomes = {}
    for kind, group in (("csv", columns), ("json", rows)):
        if group:
            (tmp_path / kind).mkdir()
            outcomes.update(run_cli(store.server.db_url, tmp_path / kind, group, kind))
    failures = {c.title: check(c, *outcomes[c.id]) for c in batch}
    assert not {t: f for t, f in failures.items() if f}, failures
