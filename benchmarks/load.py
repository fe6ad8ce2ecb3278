"""``hygeia load`` throughput and memory on an amplified Synthea NDJSON corpus.

    python -m benchmarks.load --patients 150 --against main --backends sqlite,postgresql

The Synthea transaction Bundles are re-identified up to ``--patients`` patients
(``benchmarks.search.copies``) and turned into one NDJSON file per resource
type, the shape of a FHIR bulk export: each resource's ``id`` is the UUID of
its ``urn:uuid:`` fullUrl and every ``urn:uuid:`` reference becomes
``Type/id``.  Each run is a fresh database and a real ``hygeia load`` process;
its process tree's total PSS is sampled four times a second (PSS splits shared
pages between processes, so the sum is what the loader really holds).

``--against REV`` runs the same load with another revision's code (its ``src``
unpacked from git) alternately with the current code, ``--rounds`` times each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    _process_tree,
    _pss_kb,
    bundle_files,
    fresh_postgres_db,
    read_bytes,
    source_at,
)
from benchmarks.search import copies

URN = re.compile(rb'"reference":"urn:uuid:([0-9a-fA-F-]{36})"')


def write_corpus(data: Path, patients: int, directory: Path) -> int:
    """Per-type NDJSON files for ``patients`` patients in ``directory``; returns the lines."""
    files: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    written = 0
    bodies = copies([read_bytes(path) for path in bundle_files(data)], patients)
    try:
        for body in bodies:
            for resource_type, line in _bundle_lines(body, seen):
                if resource_type not in files:
                    files[resource_type] = (directory / f"{resource_type}.ndjson").open("wb")
                files[resource_type].write(line + b"\n")
                written += 1
    finally:
        for handle in files.values():
            handle.close()
    return written


def _bundle_lines(body: bytes, seen: set[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """The resources of one transaction Bundle as NDJSON lines (each id once in a corpus:
    Synthea repeats shared Practitioners and Organizations across patients)."""
    bundle = orjson.loads(body)
    types = {entry["fullUrl"].removeprefix("urn:uuid:"): entry["resource"]["resourceType"]
             for entry in bundle["entry"]}
    lines = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        key = (resource["resourceType"], entry["fullUrl"].removeprefix("urn:uuid:"))
        if key in seen:
            continue
        seen.add(key)
        resource["id"] = key[1]
        line = URN.sub(lambda m: b'"reference":"' + types[m.group(1).decode()].encode()
                       + b"/" + m.group(1) + b'"', orjson.dumps(resource))
        lines.append((key[0], line))
    return lines


def run_load(db_url: str, files: list[Path], source: Path | None, extra: list[str]
             ) -> tuple[float, float, str]:
    """One ``hygeia load`` process: (seconds, peak total PSS in MB, its summary line)."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "hygeia.cli.main", "load", "--db", db_url, "--quiet", *extra,
         *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], sum(_pss_kb(pid) for pid in _process_tree(process.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    summary = out.decode().strip().splitlines()[-1] if out.strip() else err.decode()[-300:]
    return seconds, peak[0] / 1024, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--patients", type=int, default=150)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--against", metavar="REV", help="also run this git revision's code")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--load-args", default="", metavar="ARGS",
                        help="extra 'hygeia load' options for the current code, e.g. "
                             "--load-args='--workers 1'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        corpus = directory / "corpus"
        corpus.mkdir()
        lines = write_corpus(args.data, args.patients, corpus)
        files = sorted(corpus.glob("*.ndjson"))
        size = sum(path.stat().st_size for path in files) / 1e6
        print(f"corpus: {args.patients} patients, {lines} resources in {len(files)} NDJSON "
              f"files, {size:.0f} MB")
        sources: dict[str, Path | None] = {"current": None}
        if args.against:
            (directory / "against").mkdir()
            sources = {args.against: source_at(args.against, directory / "against"),
                       **sources}
        results: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for round_ in range(args.rounds):
            for backend in args.backends.split(","):
                for label, source in sources.items():
                    if backend == "sqlite":
                        url = f"sqlite:///{directory}/load-{round_}-{label}.db"
                    else:
                        url = fresh_postgres_db(args.postgres, "hygeia_bench_load")
                    extra = args.load_args.split() if source is None else []
                    seconds, pss, summary = run_load(url, files, source, extra)
                    results[(backend, label)].append((lines / seconds, pss))
                    print(f"{backend:10} {label:8} round {round_ + 1}: {lines / seconds:7,.0f} "
                          f"resources/s wall, peak PSS {pss:4.0f} MB | {summary}", flush=True)
                    if backend == "sqlite":
                        for path in directory.glob(f"load-{round_}-{label}.db*"):
                            path.unlink()
        for (backend, label), runs in results.items():
            rates = [rate for rate, _ in runs]
            print(f"{backend:10} {label:8} {min(rates):7,.0f} - {max(rates):7,.0f} resources/s, "
                  f"peak PSS up to {max(p for _, p in runs):4.0f} MB ({len(runs)} runs)")


if __name__ == "__main__":
    main()
