"""The official SQL on FHIR v2 test suite (tests/fixtures/sql-on-fhir-v2), shared by the
in-memory, HTTP and CLI conformance tests: loading cases, comparing rows, the test report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE = Path(__file__).resolve().parents[1] / "fixtures" / "sql-on-fhir-v2" / "tests"


@dataclass(frozen=True)
class Case:
    file: str
    title: str
    resources: list[dict[str, Any]]
    view: dict[str, Any]
    expected: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.title}"


def cases() -> Iterator[Case]:
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text())
        for test in suite["tests"]:
            expected = {k: v for k, v in test.items() if k.startswith("expect")}
            yield Case(path.name, test["title"], suite["resources"], test["view"], expected)


def files() -> dict[str, list[dict[str, Any]]]:
    return {p.name: json.loads(p.read_text())["resources"] for p in sorted(SUITE.glob("*.json"))}


def _canonical(row: dict[str, Any], columns: list[str]) -> str:
    return json.dumps({c: row.get(c) for c in columns}, sort_keys=True)


def check(
    case: Case, outcome: list[dict[str, Any]] | Exception, columns: list[str] | None
) -> str | None:
    """None when ``outcome`` (rows, or the error raised) meets the case; else why not."""
    if case.expected.get("expectError"):
        return None if isinstance(outcome, Exception) else f"expected an error, got {outcome!r}"
    if isinstance(outcome, Exception):
        return f"unexpected error: {outcome}"
    if "expectColumns" in case.expected:
        want = case.expected["expectColumns"]
        return None if columns == want else f"columns {columns} != {want}"
    expect = case.expected["expect"]
    names = sorted({k for row in expect for k in row} | {k for row in outcome for k in row})
    got = sorted(_canonical(r, names) for r in outcome)
    want_rows = sorted(_canonical(r, names) for r in expect)
    return None if got == want_rows else f"rows {got} != {want_rows}"


def write_report(path: Path, results: dict[str, str | None]) -> dict[str, Any]:
    """The specification's test report: per file, per test title, ``{"passed": bool}``."""
    report: dict[str, Any] = {}
    for case in cases():
        failure = results.get(case.id, "not run")
        report.setdefault(case.file, {"tests": []})["tests"].append(
            {"name": case.title, "result": {"passed": failure is None}}
        )
    path.write_text(json.dumps(report, indent=2))
    return report


Runner = Callable[[Case], tuple[list[dict[str, Any]] | Exception, list[str] | None]]
