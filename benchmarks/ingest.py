"""Ingest benchmark: Synthea transaction bundles over HTTP into a real Hygeia server.

Prints resources/s for SQLite and PostgreSQL at concurrency 1 and 4, beside a
same-run baseline (the same resources parsed with orjson and inserted as plain
JSON blobs into a bare SQLite table: the physical floor of our storage), the
ratio to it, and the server's peak RSS.

    python benchmarks/ingest.py [--data ../shared/data/synthea-r4] [--backends sqlite,postgresql]

``--against REV`` compares with another revision of Hygeia instead, in the same run:
its server and the current one load the same bundles alternately (``--rounds``
times each); each one's median, best and spread and the ratio of medians are
printed.  The search issue's target ("ingest within 20% of what it was before
indexing everything") is
``--against 21a6bd6``, the last revision before full indexing.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    Server,
    bundle_files,
    fresh_postgres_db,
    read_bytes,
    source_at,
)

HEADERS = {"Content-Type": "application/fhir+json"}


def baseline(bodies: list[bytes], directory: Path, synchronous: str) -> float:
    """Resources/s for orjson parse + one blob insert per resource, one transaction a bundle."""
    connection = sqlite3.connect(directory / f"baseline-{synchronous}.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, type TEXT, body BLOB)")
    count = 0
    started = time.perf_counter()
    for body in bodies:
        bundle = orjson.loads(body)
        rows = [(e["resource"]["resourceType"], orjson.dumps(e["resource"]))
                for e in bundle["entry"]]
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO blobs (type, body) VALUES (?, ?)", rows)
        connection.execute("COMMIT")
        count += len(rows)
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def post_all(base: str, bodies: list[bytes], concurrency: int) -> tuple[int, float]:
    def post(body: bytes) -> int:
        response = client.post(base + "/", content=body, headers=HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"transaction failed: {response.status_code} {response.text[:300]}")
        return len(response.json()["entry"])

    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            count = sum(pool.map(post, bodies))
        return count, time.perf_counter() - started


def run_server(db_url: str, bodies: list[bytes], concurrency: int,
               source: Path | None = None, extra: tuple[str, ...] = ()) -> tuple[float, float]:
    server = Server(db_url, *extra, source=source)
    try:
        count, elapsed = post_all(server.base, bodies, concurrency)
        return count / elapsed, server.peak_pss_mb()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for a scratch database")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--against", metavar="REV", help="compare with this git revision")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-args", default="", metavar="ARGS",
                        help="extra 'hygeia serve' options for the current code, e.g. "
                             "--serve-args=--no-offload")
    args = parser.parse_args()
    bodies = [read_bytes(path) for path in bundle_files(args.data)]
    if args.against:
        compare(args, bodies)
        return
    resources = sum(len(orjson.loads(b)["entry"]) for b in bodies)
    print(f"{len(bodies)} bundles, {resources} resources, {sum(map(len, bodies)) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        floor_full = baseline(bodies, directory, "FULL")
        floor_normal = baseline(bodies, directory, "NORMAL")
        print(f"baseline  orjson + blob insert, bare SQLite  synchronous=FULL  "
              f"{floor_full:9,.0f} resources/s")
        print(f"baseline  orjson + blob insert, bare SQLite  synchronous=NORMAL"
              f"{floor_normal:9,.0f} resources/s")
        for backend in args.backends.split(","):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                if backend == "sqlite":
                    url = f"sqlite:///{directory}/hygeia-{concurrency}.db"
                else:
                    url = fresh_postgres_db(args.postgres, f"hygeia_bench_{concurrency}")
                rate, rss = run_server(url, bodies, concurrency,
                                       extra=tuple(args.serve_args.split()))
                print(f"hygeia    {backend:10} HTTP transactions, concurrency {concurrency}  "
                      f"{rate:9,.0f} resources/s   ratio to FULL baseline {rate / floor_full:5.2f}"
                      f"   server peak memory {rss:5.0f} MB (sampled total PSS)")


def compare(args: argparse.Namespace, bodies: list[bytes]) -> None:
    """Alternate runs of ``args.against`` and the current code, ``args.rounds`` each; the
    median, best and run-to-run spread of each, and the ratio of medians."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        sources = {args.against: source_at(args.against, directory), "current": None}
        for backend in args.backends.split(","):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                rates: dict[str, list[float]] = {label: [] for label in sources}
                for round_ in range(args.rounds):
                    for number, (label, source) in enumerate(sources.items()):
                        if backend == "sqlite":
                            url = f"sqlite:///{directory}/compare-{round_}-{number}.db"
                        else:
                            url = fresh_postgres_db(args.postgres, "hygeia_bench_compare")
                        extra = tuple(args.serve_args.split()) if source is None else ()
                        rate, _ = run_server(url, bodies, concurrency, source, extra)
                        rates[label].append(rate)
                old, new = rates[args.against], rates["current"]
                print(f"{backend:10} concurrency {concurrency}: {args.against} {_runs(old)}; "
                      f"current {_runs(new)}; ratio of medians "
                      f"{statistics.median(new) / statistics.median(old):4.2f}")


def _runs(rates: list[float]) -> str:
    """Median, best and spread ((max - min) / median) of some runs, in resources/s."""
    middle = statistics.median(rates)
    return (f"median {middle:7,.0f}, best {max(rates):7,.0f} resources/s, spread "
            f"{(max(rates) - min(rates)) / middle:4.0%} ({len(rates)} runs)")


if __name__ == "__main__":
    main()
