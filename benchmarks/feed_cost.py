"""What each commit costs the change-feed consumers: database round trips and CPU per
single-resource write, on PostgreSQL, with every installed pillar's consumers running.

    python -m benchmarks.feed_cost --writes 300 --baseline main

A process builds the service ``hygeia serve`` builds (every installed pillar, its event
consumers and background jobs started) on a fresh database, then makes ``--writes``
single-resource creates through ``FhirService.handle``, one at a time with a pause of
``--gap`` seconds between them (so each commit wakes the consumers on its own, as a
trickle of monitor writes does), and waits until every consumer's cursor stands at the
newest version. Every round trip to PostgreSQL (a statement or transaction command
outside a pipeline, or a whole pipeline block) is counted by the thread that made it:
request work (this thread) or background (event consumers, delivery, jobs). Reported:
background round trips per write, the process's
CPU seconds per write, and the same for ``--baseline REV`` (that revision's ``src``,
measured in a child process of its own, alternating with this checkout for
``--rounds`` rounds) with the ratio. The writes alternate Observation / Patient /
Encounter, so some consumers are woken for types they do not want.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_PG, drop_postgres_db, fresh_postgres_db, source_at

_RESOURCES = [
    {"resourceType": "Observation", "status": "final",
     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
     "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-01-01T00:00:00Z",
     "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                       "code": "/min"}},
    {"resourceType": "Patient", "name": [{"family": "Feed", "given": ["Cost"]}]},
    {"resourceType": "Encounter", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
]


def _count_round_trips() -> Counter[str]:
    """Patch psycopg so every round trip to PostgreSQL is counted by the thread that made
    it: a statement or transaction command outside a pipeline is one, and a pipeline
    block (its statements sent together, its results read at its end) is one."""
    import psycopg

    counts: Counter[str] = Counter()
    main = threading.main_thread()

    def who() -> str:
        return "request" if threading.current_thread() is main else "background"

    execute = psycopg.Cursor.execute
    command = psycopg.Connection._exec_command
    pipeline = psycopg.Connection.pipeline

    def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self.connection, "_pipeline", None) is None:
            counts[who()] += 1
        return execute(self, *args, **kwargs)

    def counted_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "_pipeline", None) is None:
            counts[who()] += 1
        return command(self, *args, **kwargs)

    def counted_pipeline(self: Any) -> Any:
        if getattr(self, "_pipeline", None) is None:
            counts[who()] += 1
        return pipeline(self)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.Connection._exec_command = counted_command  # type: ignore[method-assign]
    psycopg.Connection.pipeline = counted_pipeline  # type: ignore[method-assign]
    return counts


def measure(db_url: str, writes: int, gap: float) -> dict[str, float]:
    """This process's src: round trips and CPU per write (run in a child process)."""
    from hygeia.cli.main import build_parser
    from hygeia.cli.pillars import install_pillars, pillar_options
    from hygeia.server import FhirService
    from hygeia.server.context import FhirRequest
    from hygeia.store import feed_cursors, open_repository

    files = tempfile.mkdtemp(prefix="feed-cost-")
    args = build_parser().parse_args(["serve", "--db", db_url, "--files", files])
    repository = open_repository(db_url)
    service = FhirService(repository)
    install_pillars(service, pillar_options(args, args.pillar_destinations))
    service.start_jobs()
    time.sleep(2.0)  # consumers claim their cursors and catch up with the empty feed
    counts = _count_round_trips()
    cpu = time.process_time()
    for number in range(writes):
        body = _RESOURCES[number % len(_RESOURCES)]
        response = service.handle(FhirRequest("POST", body["resourceType"], body=body))
        if response.status >= 300:
            raise SystemExit(f"write {number} answered {response.status}")
        time.sleep(gap)
    newest = repository.feed_horizon()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
            cursor.position < newest for cursor in feed_cursors(repository)):
        time.sleep(0.05)
    time.sleep(1.0)  # the consumers' last skips and renewals settle
    cpu = time.process_time() - cpu
    result = {"background": counts["background"] / writes,
              "request": counts["request"] / writes, "cpu_ms": cpu * 1000 / writes}
    service.close()
    repository.close()
    return result


def _child(src: Path, db_url: str, writes: int, gap: float) -> dict[str, float]:
    environment = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path.cwd()}"}
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.feed_cost", "--child", db_url, "--writes",
         str(writes), "--gap", str(gap)], env=environment, check=True,
        capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default=DEFAULT_PG)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", help="a git revision to measure beside this checkout")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.writes, args.gap)), flush=True)
        return
    here = Path(__file__).resolve().parent.parent / "src"
    with tempfile.TemporaryDirectory() as folder:
        sources = {"this": here}
        if args.baseline:
            sources = {"baseline": source_at(args.baseline, Path(folder)), **sources}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
        for round_ in range(args.rounds):
            order = list(sources) if round_ % 2 == 0 else list(reversed(sources))
            for name in order:
                url = fresh_postgres_db(args.admin, "feed_cost")
                try:
                    results[name].append(_child(sources[name], url, args.writes, args.gap))
                finally:
                    drop_postgres_db(args.admin, "feed_cost")
                print(f"round {round_ + 1} {name:8}: {results[name][-1]}", flush=True)
    summary = {name: {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
               for name, rows in results.items()}
    for name, row in summary.items():
        print(f"{name:8}: background round trips/write {row['background']:6.1f} | request "
              f"round trips/write {row['request']:5.1f} | CPU {row['cpu_ms']:5.2f} ms/write")
    if "baseline" in summary:
        base, this = summary["baseline"], summary["this"]
        print(f"ratio this/baseline: background round trips "
              f"{this['background'] / base['background']:.2f}, CPU "
              f"{this['cpu_ms'] / base['cpu_ms']:.2f} (a busy 2-core machine: other "
              "helpers run too)")


if __name__ == "__main__":
    main()
