"""The official SQL on FHIR v2 suite, run in memory by the pure ViewDefinition runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hygeia.analytics.views import ViewError, compile_view
from tests.analytics.conformance import Case, cases, check, write_report

CASES = list(cases())


def run_in_memory(case: Case) -> tuple[list[dict[str, Any]] | Exception, list[str] | None]:
    try:
        view = compile_view(case.view)
        return list(view.rows(case.resources)), view.columns
    except ViewError as exc:
        return exc, None


def test_the_suite_has_134_tests_in_22_files() -> None:
    assert len(CASES) == 134
    assert len({c.file for c in CASES}) == 22


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_official_case(case: Case) -> None:
    outcome, columns = run_in_memory(case)
    failure = check(case, outcome, columns)
    assert failure is None, failure


def test_report_has_the_specified_shape(tmp_path: Path) -> None:
    results = {c.id: check(c, *run_in_memory(c)) for c in CASES}
    report = write_report(tmp_path / "test_report.json", results)
    loaded = json.loads((tmp_path / "test_report.json").read_text())
    assert loaded == report
    assert set(loaded) == {c.file for c in CASES}
    for file_report in loaded.values():
        for test in file_report["tests"]:
            assert set(test) == {"name", "result"} and isinstance(test["result"]["passed"], bool)
    assert sum(t["result"]["passed"] for f in loaded.values() for t in f["tests"]) == len(CASES)


def test_invalid_view_names_the_location() -> None:
    with pytest.raises(ViewError) as caught:
        compile_view({"resource": "Patient", "select": [{"column": [{"name": "x", "path": "@@"}]}]})
    assert caught.value.location == "ViewDefinition.select[0].column[0].path"
