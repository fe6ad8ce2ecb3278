"""The load journal at every commit point: a load that dies in any one of its
transactions, then runs again, stores exactly what one clean load stores.

In-process and deterministic (the subprocess kill test, ``test_load_rerun``, hits
random points): the k-th write transaction of the load fails just before it would
commit, for every k, so it rolls back as a kill during that commit would, with
every transaction before it committed.  Every kind of input the command takes is
in the folder: transaction Bundles, a batch Bundle, a collection of resources
without ids, NDJSON with resources without ids and a SearchParameter, and a
transaction Bundle after the NDJSON.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from hygeia.cli.load import load_paths
from hygeia.server import FhirService
from hygeia.server.loading.loader import Loader
from hygeia.store import open_repository
from hygeia.store.base import Session
from hygeia.store.plain_sql import reading
from tests.helpers import FIXTURES, patient

BATCH = 7  # NDJSON lines per transaction here, so one file spans several


class Crash(BaseException):
    """The process dying: nothing catches it."""


def observation(value: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"text": "journal"}, "valueInteger": value}


def search_parameter() -> dict[str, Any]:
    return {"resourceType": "SearchParameter", "url": "http://example.org/sp/journal-value",
            "name": "journal-value", "status": "active", "code": "journal-value",
            "base": ["Observation"], "type": "number", "expression": "Observation.value",
            "description": "a custom parameter in the middle of a load"}


def folder(tmp_path: Path) -> Path:
    """Every kind of input ``hygeia load`` takes, small."""
    root = tmp_path / "in"
    root.mkdir()
    for fixture in sorted((FIXTURES / "synthea").glob("*.json.gz"))[:2]:
        shutil.copy(fixture, root / fixture.name)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient(f"batch-{n}"), "request": {"method": "POST", "url": "Patient"}}
        for n in range(3)]}
    (root / "batch.json").write_bytes(orjson.dumps(batch))
    collection = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": observation(n)} for n in range(700)]}
    (root / "collection.json").write_bytes(orjson.dumps(collection))
    lines = [orjson.dumps(observation(n)) for n in range(20)]
    lines.insert(9, orjson.dumps(search_parameter()))
    (root / "lines.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    # after the NDJSON, whose last batch may still be committing on the loader's thread
    last = sorted((FIXTURES / "synthea").glob("*.json.gz"))[-1]
    shutil.copy(last, root / f"x-{last.name}")
    return root


def stored(db: str) -> dict[str, Any]:
    with open_repository(db) as repository, reading(repository) as session:
        resources = session.execute("SELECT res_type, count(*) FROM resource "
                                    "GROUP BY res_type").fetchall()
        versions = session.execute("SELECT count(*) FROM resource_version").fetchone()[0]
        unfinished = session.execute("SELECT count(*) FROM load_journal "
                                     "WHERE NOT complete").fetchone()[0]
    return {"resources": dict(resources), "versions": versions, "unfinished": unfinished}


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Loader.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "batch_size", BATCH)


def crashing_at(monkeypatch: pytest.MonkeyPatch, k: int | None) -> list[int]:
    """Make the k-th write transaction from now fail just before its commit; counts them."""
    plain = FhirService.transaction
    count = [0]

    @contextmanager
    def transaction(self: FhirService, **options: Any) -> Iterator[Session]:
        with plain(self, **options) as session:
            yield session
            count[0] += 1
            if count[0] == k:
                raise Crash

    monkeypatch.setattr(FhirService, "transaction", transaction)
    return count


def load(db: str, root: Path) -> None:
    with open_repository(db) as repository:
        load_paths(FhirService(repository), [str(root)], quiet=True, workers=0)


def test_a_load_dying_in_any_transaction_reruns_to_exactly_one_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_batches: None) -> None:
    root = folder(tmp_path)
    clean = f"sqlite:///{tmp_path}/clean.db"
    commits = crashing_at(monkeypatch, None)
    load(clean, root)
    expected = stored(clean)
    assert expected["versions"] == sum(expected["resources"].values())  # each written once
    assert commits[0] > 10  # Bundles, batch entries, chunks, NDJSON batches, the parameter
    for k in range(1, commits[0] + 1):
        db = f"sqlite:///{tmp_path}/crash{k}.db"
        crashing_at(monkeypatch, k)
        with pytest.raises(Crash):
            load(db, root)
        crashing_at(monkeypatch, None)
        load(db, root)
        assert stored(db) == expected, f"dying in transaction {k}"


def test_a_file_that_changed_is_loaded_again_whole(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    source = root / "lines.ndjson"
    source.write_bytes(orjson.dumps(observation(1)) + b"\n")
    db = f"sqlite:///{tmp_path}/changed.db"
    load(db, root)
    load(db, root)  # the same content: skipped
    source.write_bytes(orjson.dumps(observation(1)) + b"\n" + orjson.dumps(observation(2)))
    load(db, root)  # new content: a new file to the journal, loaded from its start
    assert stored(db)["resources"] == {"Observation": 3}
