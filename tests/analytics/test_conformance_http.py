"""The official SQL on FHIR v2 suite over the real store on SQLite and PostgreSQL: each
file's resources are stored through a real ``hygeia serve`` (replacing the previous
file's), then every test's view runs through ``$viewdefinition-run``
(test_conformance_cli.py runs them through ``hygeia view run``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
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

