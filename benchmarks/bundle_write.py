"""What one transaction Bundle of monitor readings costs the write path on PostgreSQL, in
process (no HTTP, no NEWS2 engine, no feed consumers): the CPU of this process and of
the database's backends, the statements sent and the round trips (the server's
ReadyForQuery messages and COPY waits, from libpq's trace), per Bundle.

    python -m benchmarks.bundle_write [--bundle 8] [--bundles 200] [--rounds 3]
        [--baseline-src /path/to/other/src] [--db-prefix P]

A Bundle holds ``--bundle`` observation sets of 6 vital signs (benchmarks/clinical.py),
POSTed through ``FhirService.handle`` on one thread. With ``--baseline-src`` the same
measurement runs in a child process serving that ``src``, the two taking turns
``--rounds`` times (the side that goes first alternating).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg

from benchmarks.clinical import START, set_resources, transaction
from benchmarks.common import DEFAULT_PG, drop_postgres_db, fresh_postgres_db, postgres_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
TRACED = 5  # Bundles whose statements and round trips are counted
UNTRACED_CONNECT = psycopg.Connection.connect


def traced_connections(folder: str) -> list[tuple[Any, Any, str]]:
    """Every connection opened from now on writes libpq's trace to a file of ``folder``."""
    opened: list[tuple[Any, Any, str]] = []
    connect = UNTRACED_CONNECT.__func__  # type: ignore[attr-defined]

    def tracing(cls: Any, *args: Any, **kwargs: Any) -> Any:
        connection = connect(cls, *args, **kwargs)
        path = f"{folder}/{len(opened)}"
        file = open(path, "wb")  # noqa: SIM115 (open while the connection is)
        connection.pgconn.trace(file.fileno())
        opened.append((connection, file, path))
        return connection

    psycopg.Connection.connect = classmethod(tracing)  # type: ignore[method-assign,assignment]
    return opened


def protocol_counts(opened: list[tuple[Any, Any, str]]) -> collections.Counter[str]:
    """Messages by type, from the traces so far (then each trace starts afresh)."""
    counts: collections.Counter[str] = collections.Counter()
    for connection, _, path in opened:
        connection.pgconn.untrace()
        for line in Path(path).read_bytes().decode(errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) > 3:
                counts[f"{fields[1]} {fields[3].split(' ')[0]}"] += 1
    for connection, file, _ in opened:
        file.truncate(0)
        file.seek(0)
        connection.pgconn.trace(file.fileno())
    return counts


def measure(sets: int, bundles: int, admin: str, name: str) -> dict[str, float]:
    """Per Bundle: CPU ms here and in the backends, statements and round trips."""
    from hygeia.server import FhirService
    from hygeia.server.context import FhirRequest
    from hygeia.store import open_repository

    with tempfile.TemporaryDirectory() as folder:
        opened = traced_connections(folder)
        repository = open_repository(fresh_postgres_db(admin, name))
        try:
            service = FhirService(repository)
            patients = [f"p{number}" for number in range(sets)]
            service.handle(FhirRequest("POST", "", body={
                "resourceType": "Bundle", "type": "transaction", "entry": [
                    {"resource": {"resourceType": "Patient", "id": id},
                     "request": {"method": "PUT", "url": f"Patient/{id}"}}
                    for id in patients]}))
            rng = random.Random(1)

            def post() -> None:
                resources = [resource for id in patients
                             for resource in set_resources(id, START.isoformat(), rng)]
                raw = orjson.dumps(transaction(resources))
                response = service.handle(FhirRequest("POST", "", body=orjson.loads(raw),
                                                      raw_body=raw))
                assert response.status == 200

            for _ in range(10):  # warm: statements prepared on the pool's connection
                post()
            protocol_counts(opened)
            for _ in range(TRACED):
                post()
            counts = protocol_counts(opened)
            for connection, _, _ in opened:
                connection.pgconn.untrace()
            cpu, backend = time.process_time(), postgres_cpu_seconds(name)
            for _ in range(bundles):
                post()
            cpu, backend = time.process_time() - cpu, postgres_cpu_seconds(name) - backend
        finally:
            repository.close()
            drop_postgres_db(admin, name)
            psycopg.Connection.connect = UNTRACED_CONNECT  # type: ignore[method-assign]
    statements = counts["F Execute"] + counts["F Query"]
    trips = counts["B ReadyForQuery"] + counts["B CopyInResponse"]
    return {"cpu": cpu * 1000 / bundles, "backend": backend * 1000 / bundles,
            "statements": statements / TRACED, "round trips": trips / TRACED}


def run_side(source: Path | None, args: argparse.Namespace, name: str) -> dict[str, float]:
    """This checkout in this process, or ``source`` in a child process."""
    if source is None:
        return measure(args.bundle, args.bundles, args.postgres, name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(ROOT)])}
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.bundle_write", "--child", name,
         "--bundle", str(args.bundle), "--bundles", str(args.bundles),
         "--postgres", args.postgres], env=env, check=True, capture_output=True, cwd=ROOT)
    return dict(orjson.loads(output.stdout.splitlines()[-1]))


def line(label: str, figures: dict[str, float]) -> str:
    return (f"{label:<34} CPU a Bundle: here {figures['cpu']:6.2f} ms, backends "
            f"{figures['backend']:5.2f} ms | statements {figures['statements']:5.1f}, "
            f"round trips {figures['round trips']:5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=int, default=8, help="observation sets a Bundle")
    parser.add_argument("--bundles", type=int, default=200, help="Bundles measured a round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="SRC")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--db-prefix", default="bench_bundle_write")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measurement for a parent's --baseline-src
        print(orjson.dumps(measure(args.bundle, args.bundles, args.postgres, args.child)).decode())
        return
    sides: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.baseline_src is not None:
        sides.append((f"baseline {args.baseline_src}", args.baseline_src.resolve()))
    for round_number in range(args.rounds):
        for label, source in sides if round_number % 2 == 0 else reversed(sides):
            name = f"{args.db_prefix}_{uuid.uuid4().hex[:8]}"
            print(line(label, run_side(source, args, name)), flush=True)


if __name__ == "__main__":
    main()
