"""``kill -9`` of a real ``hygeia serve`` while it refreshes a materialized view under a
steady stream of writes (creates, updates that change a resource's row count,
deletes): after a restart the view's table and its Parquet file are exactly the view
run afresh over the store, with nothing lost and nothing twice. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest

from hygeia.analytics.commands import status_lines
from hygeia.analytics.materialize import KEY, registered
from hygeia.analytics.refresh import CONSUMER
from hygeia.analytics.source import Selection, stored_resources
from hygeia.analytics.views import compile_view
from hygeia.store import feed_position, open_repository, reading
from tests.conftest import BACKENDS, ServerProcess, _drop_database

NAMES: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "crash_names", "status": "active",
    "resource": "Patient",
    "select": [{"column": [{"name": "id", "path": "id", "type": "id"},
                           {"name": "active", "path": "active", "type": "boolean"}]},
               {"forEachOrNull": "name", "column": [{"name": "family", "path": "family"}]}],
}
KILLS = 3
SERVE = ("--view-parquet-seconds", "0.3")


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path, analytics_installed: None
       ) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crash.db"
        return
    base = request.getfixturevalue("postgres_url").rsplit("/", 1)[0]
    url = f"{base}/hygeia_vcrash_{uuid.uuid4().hex[:8]}"
    yield url
    _drop_database(url)


def patient(n: int, names: int, active: bool = True) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"p{n}", "active": active,
            "name": [{"family": f"F{n}-{k}"} for k in range(names)]}


class Writer(threading.Thread):
    """Batches of creates, updates and deletes, sent for as long as the test runs; a
    batch that meets a dead server is sent again to the next one."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.base: str | None = None
        self.stopping = threading.Event()
        self.batches = 0
        self.random = random.Random(20)

    def run(self) -> None:
        made = 200
        while not self.stopping.is_set():
            entries = []
            for _ in range(25):
                roll = self.random.random()
                if roll < 0.4:
                    made += 1
                    resource = patient(made, self.random.randint(0, 3))
                    entries.append({"resource": resource, "request": {
                        "method": "PUT", "url": f"Patient/p{made}"}})
                elif roll < 0.85:
                    n = self.random.randint(0, made)
                    resource = patient(n, self.random.randint(0, 3), self.random.random() < 0.5)
                    entries.append({"resource": resource, "request": {
                        "method": "PUT", "url": f"Patient/p{n}"}})
                else:
                    n = self.random.randint(0, made)
                    entries.append({"request": {"method": "DELETE", "url": f"Patient/p{n}"}})
            body = orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries})
            while not self.stopping.is_set():
                base = self.base
                try:
                    if base is not None and httpx.post(
                            base, content=body, timeout=30,
                            headers={"Content-Type": "application/fhir+json"}
                    ).status_code == 200:
                        self.batches += 1
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)


def workers(pid: int) -> list[int]:
    """The serving processes ``hygeia serve`` forked."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def behind(url: str) -> int:
    with open_repository(url) as repository:
        return repository.feed_horizon() - (feed_position(repository, CONSUMER) or 0)


def kill_9_while_refreshing(server: ServerProcess, url: str, writer: Writer) -> None:
    """SIGKILL the serving process, once it has taken a few batches of writes, at a moment
    its refresher has feed entries to apply."""
    deadline = time.monotonic() + 60
    wanted = writer.batches + 4
    while writer.batches < wanted or behind(url) <= 0:
        assert time.monotonic() < deadline, "the refresher was never behind the writes"
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.2))
    for pid in workers(server.process.pid):
        os.kill(pid, signal.SIGKILL)
    server.kill()


def expected_rows(url: str) -> Counter[tuple[Any, ...]]:
    view = compile_view(NAMES)
    rows: Counter[tuple[Any, ...]] = Counter()
    with open_repository(url) as repository:
        for resource in stored_resources(repository.reader, Selection("Patient")):
            for row in view.resource_rows(resource):
                rows[(row["id"], row["active"], row["family"], f"Patient/{resource['id']}")] \
                    += 1
    return rows


def table_rows(url: str) -> Counter[tuple[Any, ...]]:
    table = "analytics.view_crash_names" if url.startswith("postgresql") else \
        "view_crash_names"
    with open_repository(url) as repository, reading(repository) as session:
        found = session.execute(f'SELECT id, active, family, "{KEY}" FROM {table}').fetchall()
    return Counter((a, None if b is None else bool(b), c, d) for a, b, c, d in found)


def parquet_rows(path: Path) -> Counter[tuple[Any, ...]]:
    table = pq.read_table(path).to_pylist()
    return Counter((r["id"], r["active"], r["family"], r[KEY]) for r in table)


def caught_up(url: str) -> bool:
    with open_repository(url) as repository:
        horizon = repository.feed_horizon()
        cursor = feed_position(repository, CONSUMER) or 0
        return cursor == horizon and all(v.parquet_seq == horizon
                                         for v in registered(repository))


def test_kill_9_during_refresh_loses_and_repeats_nothing(db: str, tmp_path: Path) -> None:
    server = ServerProcess(db, *SERVE)
    writer = Writer()
    try:
        seed = [{"resource": patient(n, n % 3), "request": {
            "method": "PUT", "url": f"Patient/p{n}"}} for n in range(201)]
        assert server.client.post("", json={"resourceType": "Bundle", "type": "batch",
                                            "entry": seed}).status_code == 200
        view = tmp_path / "names.json"
        view.write_bytes(orjson.dumps(NAMES))
        made = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "view", "materialize",
                               str(view), "--db", db, "--dir", str(tmp_path / "analytics")],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        parquet = tmp_path / "analytics" / "view_crash_names.parquet"
        writer.base = server.base
        writer.start()
        for _ in range(KILLS):
            kill_9_while_refreshing(server, db, writer)
            server = ServerProcess(db, *SERVE)
            writer.base = server.base
        time.sleep(1)
        writer.stopping.set()
        writer.join(60)
        assert writer.batches > 4 * KILLS, "the writes did not go on across the restarts"
        deadline = time.monotonic() + 120
        while not caught_up(db):
            assert time.monotonic() < deadline, "the view did not catch up after the restart"
            time.sleep(0.2)
        expected = expected_rows(db)
        assert sum(expected.values()) > 200
        assert table_rows(db) == expected
        assert parquet_rows(parquet) == expected
        with open_repository(db) as repository:
            line = status_lines(repository)[0]
        assert "\tlag 0\t" in line and "\tparquet lag 0\t" in line, line
        assert not list(parquet.parent.glob("*.partial"))
    finally:
        writer.stopping.set()
        server.stop()


def test_materialize_under_writes_misses_nothing(db: str, tmp_path: Path) -> None:
    """A view materialized while writes go on and the refresher runs: the writes its run
    did not see and the refresher handled before the view was registered are applied
    by the registration itself, so the table ends exact."""
    server = ServerProcess(db, *SERVE)
    writer = Writer()
    try:
        # enough patients that the run takes a while, while the writes go on
        for start in range(0, 4000, 1000):
            seed = [{"resource": patient(n, n % 3), "request": {
                "method": "PUT", "url": f"Patient/p{n}"}} for n in range(start, start + 1000)]
            assert server.client.post("", json={"resourceType": "Bundle", "type": "batch",
                                                "entry": seed}, timeout=300).status_code == 200
        writer.base = server.base
        writer.start()
        deadline = time.monotonic() + 60
        while writer.batches < 3:
            assert time.monotonic() < deadline, "the writes did not start"
            time.sleep(0.05)
        view = tmp_path / "names.json"
        view.write_bytes(orjson.dumps(NAMES))
        for _ in range(2):  # a first registration, then a run over a registered view
            made = subprocess.run(
                [sys.executable, "-m", "hygeia.cli.main", "view", "materialize", str(view),
                 "--db", db, "--dir", str(tmp_path / "analytics")],
                capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert made.returncode == 0, made.stderr
        wanted = writer.batches + 3
        while writer.batches < wanted:
            assert time.monotonic() < deadline + 60, "the writes stopped"
            time.sleep(0.05)
        writer.stopping.set()
        writer.join(60)
        deadline = time.monotonic() + 120
        while not caught_up(db):
            assert time.monotonic() < deadline, "the view did not catch up"
            time.sleep(0.2)
        expected = expected_rows(db)
        assert table_rows(db) == expected
        assert parquet_rows(tmp_path / "analytics" / "view_crash_names.parquet") == expected
    finally:
        writer.stopping.set()
        server.stop()
