"""Date-bounded and date-sorted Observation searches on PostgreSQL, beside an older revision.

The searches a monitor or an early-warning score sends (``patient`` + ``code`` +
``date=ge...``, ``_sort=-date``), for one patient with many Observations (an ICU
patient: ``--heavy`` of them) and for an ordinary Synthea patient, plus
date-only and code + date searches.  The database holds ``--patients`` Synthea
patients (re-identified copies of ../shared/data/synthea-r4) and the heavy patient,
loaded once with ``hygeia load`` (``--reuse`` keeps it for later runs).

The baseline is measured in the same run, on the same database: the store of
``--against REV`` (default: the revision before the date index and the statement
changes of ADR core-date-search) searches without the ``date_index_high`` index
(dropped inside its transaction and rolled back, so it never sees it).  The two
alternate query by query, ``--rounds`` times each; the median per query and the
ratio are printed, and each pair's matches and totals must agree.

    python -m benchmarks.date_search [--patients 200] [--heavy 60000] [--rounds 5]
        [--against REV] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl

import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    bundle_files,
    fresh_postgres_db,
    read_bytes,
    reidentify,
    source_at,
)

BASELINE_REV = "1dd3f7f"  # before ADR core-date-search
HEAVY = "bench-heavy-patient"
LOINC = "http://loinc.org"
VITALS = (("8867-4", "Heart rate", "/min"), ("9279-1", "Respiratory rate", "/min"),
          ("2708-6", "Oxygen saturation", "%"), ("8310-5", "Body temperature", "Cel"),
          ("8480-6", "Systolic blood pressure", "mm[Hg]"), ("29463-7", "Body weight", "kg"))
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
YEARS = 3  # the heavy patient's Observations are spread over 2021-2023


def heavy_lines(count: int, seed: int = 7) -> bytes:
    """NDJSON: one Patient and ``count`` vital-sign Observations spread over three years."""
    rng = random.Random(seed)
    lines = [orjson.dumps({"resourceType": "Patient", "id": HEAVY, "birthDate": "1950-01-01",
                           "name": [{"family": "Heavy", "given": ["Ivy"]}]})]
    start = 1609459200  # 2021-01-01T00:00:00Z
    step = YEARS * 365 * 86400 // count
    for number in range(count):
        code, display, unit = VITALS[number % len(VITALS)]
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + number * step))
        lines.append(orjson.dumps({
            "resourceType": "Observation", "id": f"heavy-{number}", "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{HEAVY}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": round(rng.uniform(50, 150), 1), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit}}))
    return b"\n".join(lines) + b"\n"


def load(url: str, folder: Path, patients: int, heavy: int) -> None:
    """Write the bundles and the heavy patient's NDJSON into ``folder``; ``hygeia load``."""
    bodies = [read_bytes(p) for p in bundle_files(DEFAULT_DATA) if b'"Patient"' in read_bytes(p)]
    (folder / "bundles").mkdir()
    for number in range(patients):
        copy, index = divmod(number, len(bodies))
        (folder / "bundles" / f"{number:05d}.json").write_bytes(reidentify(bodies[index], copy))
    (folder / "heavy.ndjson").write_bytes(heavy_lines(heavy))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--quiet", "--db", url,
                    str(folder / "bundles"), str(folder / "heavy.ndjson")], check=True)
    print(f"loaded {patients} Synthea patients and {heavy:,} Observations of one patient in "
          f"{time.perf_counter() - started:.0f} s", flush=True)


def queries(url: str) -> list[str]:
    """The query mix: the heavy patient's, and a typical patient's with one of their codes."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
        typical, code = connection.execute(
            "SELECT ri.target_id, ti.code FROM reference_index ri JOIN token_index ti "
            "ON ti.res_pk = ri.res_pk WHERE ri.target_type = 'Patient' AND ri.target_id <> %s "
            "AND ti.system = %s GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1",
            (HEAVY, LOINC)).fetchone()
    heart = f"{LOINC}|8867-4"
    vitals = ",".join(f"{LOINC}|{code}" for code, _, _ in VITALS[:5])
    return [
        f"Observation?patient={HEAVY}&code={heart}&date=ge2023-12-20&_count=50",
        f"Observation?patient={HEAVY}&code={heart}&date=ge2021-01-01&_count=50",
        f"Observation?patient={HEAVY}&code={vitals}&_sort=-date&_count=20",
        f"Observation?patient={HEAVY}&code={vitals}&_sort=-date&_count=1&_total=none",
        f"Observation?patient={HEAVY}&category=vital-signs&_sort=date&_count=20",
        f"Observation?patient={typical}&code={LOINC}|{code}&date=ge2000-01-01&_count=50",
        f"Observation?patient={typical}&category=vital-signs&_sort=-date&_count=20",
        f"Observation?patient={typical}&code={LOINC}|{code}&_sort=-date&_count=1",
        f"Observation?code={heart}&date=ge2023-12-01&_count=20",
        "Observation?date=ge2023-12-28&_count=20",
    ]


def worker(url: str, drop_index: bool) -> None:
    """Answer query lines on stdin with "ms matches total" lines, searching through the
    store of whichever ``src`` is on PYTHONPATH (``drop_index``: without date_index_high,
    dropped in the search's own transaction and rolled back)."""
    from hygeia.fhir.search.query import parse_query
    from hygeia.store import open_repository

    repository = open_repository(url)

    class Rollback(Exception):
        pass

    for line in sys.stdin:
        kind, _, params = line.strip().partition("?")
        query = parse_query(kind, parse_qsl(params))
        try:
            with repository.transaction() as session:
                if drop_index:
                    session.execute("DROP INDEX IF EXISTS date_index_high")
                started = time.perf_counter()
                page = session.search(query)
                elapsed = time.perf_counter() - started
                raise Rollback
        except Rollback:
            pass
        ids = ",".join(match.id for match in page.matches)
        print(f"{elapsed * 1000:.3f} {page.total} {ids}", flush=True)


class Worker:
    """A worker process kept open, one query line at a time."""

    def __init__(self, url: str, source: Path, drop_index: bool) -> None:
        env = {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{Path.cwd()}"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.date_search", "--worker", url,
             *(["--drop-index"] if drop_index else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def search(self, query: str) -> tuple[float, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(query + "\n")
        self.process.stdin.flush()
        elapsed, _, answer = self.process.stdout.readline().strip().partition(" ")
        return float(elapsed), answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def compare(url: str, against: str, rounds: int) -> None:
    mix = queries(url)
    with tempfile.TemporaryDirectory() as tmp:
        old = Worker(url, source_at(against, Path(tmp)), drop_index=True)
        new = Worker(url, Path(__file__).resolve().parent.parent / "src", drop_index=False)
        try:
            times: dict[str, tuple[list[float], list[float]]] = {q: ([], []) for q in mix}
            for _ in range(rounds):
                for query in mix:
                    before, expected = old.search(query)
                    after, found = new.search(query)
                    if found != expected:
                        sys.exit(f"results differ for {query}:\n{expected}\n{found}")
                    times[query][0].append(before)
                    times[query][1].append(after)
        finally:
            old.close()
            new.close()
    print(f"\n{'before ms':>10}{'after ms':>10}{'ratio':>8}  query (medians of {rounds}; "
          f"before: {against} without date_index_high)")
    for query, (before_ms, after_ms) in times.items():
        b, a = statistics.median(before_ms), statistics.median(after_ms)
        print(f"{b:10.1f}{a:10.1f}{b / a:7.1f}x  {query}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--heavy", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", default=BASELINE_REV, metavar="REV")
    parser.add_argument("--reuse", action="store_true",
                        help="query the database an earlier run loaded (same sizes)")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--drop-index", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.drop_index)
        return
    name = f"core_bench_date_{args.patients}_{args.heavy}"
    url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    if not args.reuse:
        url = fresh_postgres_db(args.postgres, name)
        with tempfile.TemporaryDirectory() as tmp:
            load(url, Path(tmp), args.patients, args.heavy)
    compare(url, args.against, args.rounds)


if __name__ == "__main__":
    main()
