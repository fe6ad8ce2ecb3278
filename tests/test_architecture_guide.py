"""The pillar example of docs/architecture.md runs as written: its tables are migrated,
its operation is routed, guarded, listed and answers from the record, and its change-feed
consumer keeps its table current."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hygeia.server import FhirService
from hygeia.store import open_repository
from hygeia.store.migrations.registry import unregister_stream
from tests.helpers import body, call

GUIDE = Path(__file__).parent.parent / "docs" / "architecture.md"


def pillar_example() -> str:
    text = GUIDE.read_text()
    start = text.index("A pillar in brief")
    found = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert found is not None, "the pillar example is missing from docs/architecture.md"
    return found.group(1)


@pytest.fixture
def pillar() -> Iterator[dict[str, Any]]:
    namespace: dict[str, Any] = {"__name__": "hygeia_example_pillar"}
    try:
        exec(compile(pillar_example(), str(GUIDE), "exec"), namespace)
        yield namespace
    finally:
        unregister_stream("insurance")


def test_the_pillar_example_plugs_in(pillar: dict[str, Any], tmp_path: Path) -> None:
    database = tmp_path / "pillar.db"
    repository = open_repository(f"sqlite:///{database}")
    try:
        service = FhirService(repository)
        pillar["PILLAR"].install(service, {"payer_name": "Example Health"})
        coverage = {"resourceType": "Coverage", "id": "c1", "status": "active",
                    "beneficiary": {"reference": "Patient/p1"},
                    "payor": [{"display": "Example Health"}]}
        assert call(service, "PUT", "Coverage/c1", coverage).status == 201

        def ask(reference: str) -> dict[str, Any]:
            request = {"resourceType": "CoverageEligibilityRequest",
                       "insurance": [{"coverage": {"reference": reference}}]}
            return body(call(service, "POST", "CoverageEligibilityRequest/$submit", request))

        assert ask("Coverage/c1")["outcome"] == "complete"
        assert ask("Coverage/missing")["outcome"] == "error"
        statement = service.capabilities()["rest"][0]
        entry = next(r for r in statement["resource"]
                     if r["type"] == "CoverageEligibilityRequest")
        submit = next(op for op in entry["operation"] if op["name"] == "submit")
        assert submit["documentation"] == "Check coverage with Example Health."
        service.start_jobs()  # the consumer follows the feed from its start
        assert call(service, "PUT", "Coverage/c1", {**coverage, "status": "cancelled"}
                    ).status == 200
        assert wait_for_row(database, ("c1", 2)), "the consumer did not catch up in 10 s"
        service.close()
    finally:
        repository.close()


def wait_for_row(database: Path, row: tuple[str, int]) -> bool:
    """Whether the pillar's own table (made by its migration) holds ``row`` within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            rows = connection.execute("SELECT coverage, version FROM insurance_coverage")
            if row in rows.fetchall():
                return True
        time.sleep(0.05)
    return False
