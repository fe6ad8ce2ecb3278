"""Group commit under concurrency: do units from many threads share commits?

``--threads`` threads each submit ``--units`` units (one Observation create each,
with its index rows) to one :class:`~hygeia.server.group_commit.GroupCommit`, on
SQLite and on PostgreSQL, with fsync on.  Prints units/s, the units per commit (1.0
would mean no sharing) and, as the same-run baseline, the same creates committed
one transaction each from the same threads. Where the repository runs writers side
by side (PostgreSQL), group commit is measured with one committer and with
:attr:`concurrent_writers`.

    python -m benchmarks.group_commit [--threads 8] [--units 100] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import orjson

from benchmarks.common import DEFAULT_PG, drop_postgres_db, fresh_postgres_db
from hygeia.fhir.search.index import index_resource
from hygeia.server.group_commit import GroupCommit
from hygeia.store import Repository, Session, StoredVersion, open_repository

OBSERVATION = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": "Patient/p1"},
               "effectiveDateTime": "2024-01-01T10:00:00Z",
               "valueQuantity": {"value": 72, "unit": "/min"}}


def create(session: Session, id: str) -> None:
    resource = {**OBSERVATION, "id": id}
    session.put(StoredVersion("Observation", id, 1, time.time_ns() // 1000, False,
                              orjson.dumps(resource), "POST", 0), index_resource(resource))


def run_threads(threads: int, units: int, submit: object) -> float:
    """Seconds for ``threads`` threads to each call ``submit(id)`` ``units`` times."""
    def worker(number: int) -> None:
        for unit in range(units):
            submit(f"t{number}-u{unit}-{time.monotonic_ns()}")  # type: ignore[operator]

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def measure(repository: Repository, threads: int, units: int) -> None:
    def alone(id: str) -> None:
        with repository.transaction() as session:
            create(session, id)

    single = threads * units / run_threads(threads, units, alone)
    counts = sorted({1, repository.concurrent_writers})
    for committers in counts:
        commits = GroupCommit(repository, name="bench-commit", committers=committers)
        commits.start()
        try:
            shared = threads * units / run_threads(
                threads, units,
                lambda id, commits=commits: commits.run(lambda session: create(session, id)))
        finally:
            commits.stop()
        print(f"{repository.dialect:>10}: group commit, {committers} committer(s): "
              f"{shared:7,.0f} creates/s, {commits.units / commits.batches:5.1f} units per "
              f"commit; baseline (a transaction each, same threads) {single:7,.0f} "
              f"creates/s; ratio {shared / single:4.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--db-prefix", default="core_bench",
                        help="name prefix of the scratch PostgreSQL database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'group.db'}"
            else:
                url = fresh_postgres_db(args.postgres, f"{args.db_prefix}_group_commit")
            repository = open_repository(url)
            try:
                measure(repository, args.threads, args.units)
            finally:
                repository.close()
                if backend != "sqlite":
                    drop_postgres_db(args.postgres, f"{args.db_prefix}_group_commit")


if __name__ == "__main__":
    main()
