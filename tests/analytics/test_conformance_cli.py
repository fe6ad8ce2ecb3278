"""The official SQL on FHIR v2 suite through ``hygeia view run`` over the real store on
SQLite and PostgreSQL: each suite file's resources are stored through a real ``hygeia
serve``, then one CLI process runs all of that file's views (one output file each)."""

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
from tests.analytics.test_conformance_http import Store
from tests.conftest import BACKENDS, backend_server

CASES = list(cases())


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          analytics_installed: None) -> Iterator[Store]:
    with backend_server(request, tmp_path_factory, "sofcli") as process:
        yield Store(process)



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
