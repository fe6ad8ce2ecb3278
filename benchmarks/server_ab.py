"""Same-run A/B of two Hygeia checkouts' HTTP servers on one database (docs/adr/0003).

Loads a database once (search benchmark patients), then starts the baseline
checkout's server and this one's in turn, alternating their order every
round, and measures on each: the search benchmark's query mix, reads by id,
``GET /fhir/metadata`` (a 900 KB answer), and the server's CPU time per
request of the mix (from /proc, robust to other load on the machine).  Prints
every round and the median of the rounds.

    git archive <commit> src | tar -x -C /tmp/baseline
    python -m benchmarks.server_ab --baseline /tmp/baseline/src [--patients 200]
        [--requests 3000] [--rounds 3] [--db postgresql://...] [--reuse DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    Server,
    bundle_files,
    cpu_seconds,
    read_bytes,
    timed_get,
)
from benchmarks.search import copies, load, run_mix

THIS = Path(__file__).resolve().parent.parent / "src"
CLIENTS = 4


def rate_of(base: str, targets: list[str]) -> float:
    """Requests/s of GETs of ``targets`` from CLIENTS keep-alive connections."""
    address = urlsplit(base)
    local = threading.local()

    def get(target: str) -> float:
        return timed_get(local, address, target, "ab")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(get, targets[:20]))
        started = time.perf_counter()
        list(pool.map(get, targets))
        return len(targets) / (time.perf_counter() - started)


def measure(source: Path, db: str, facts: list[dict[str, Any]], requests: int,
            seed: int) -> dict[str, float]:
    server = Server(db, source=source)
    try:
        before = cpu_seconds(server.process.pid)
        _, mix = run_mix(server.base, facts, requests, CLIENTS, seed)
        cpu = (cpu_seconds(server.process.pid) - before) * 1000 / requests
        rng = random.Random(seed)
        path = urlsplit(server.base).path
        read = rate_of(server.base, [f"{path}/Patient/{rng.choice(facts)['id']}"
                                     for _ in range(requests)])
        metadata = rate_of(server.base, [f"{path}/metadata"] * 600)
    finally:
        server.stop()
    return {"search mix /s": mix, "read /s": read, "metadata /s": metadata,
            "CPU ms per mix request": cpu}


def loaded_facts(db: str, folder: Path, patients: int) -> list[dict[str, Any]]:
    saved = folder / "facts.json"
    if saved.exists():
        facts: list[dict[str, Any]] = orjson.loads(saved.read_bytes())
        return facts
    bodies = copies([read_bytes(p) for p in bundle_files(DEFAULT_DATA)
                     if b'"Patient"' in read_bytes(p)], patients)
    server = Server(db, source=THIS)
    try:
        facts, seconds = load(server.base, bodies)
    finally:
        server.stop()
    saved.write_bytes(orjson.dumps(facts))
    print(f"loaded {len(bodies)} patients in {seconds:.1f} s")
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="the src folder of the checkout to compare with")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file)")
    parser.add_argument("--reuse", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    folder = args.reuse or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    db = args.db or f"sqlite:///{folder}/ab.db"
    facts = loaded_facts(db, folder, args.patients)
    servers = {"baseline": args.baseline, "this": THIS}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for round_ in range(args.rounds):
        order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
        for name in order:
            numbers = measure(servers[name], db, facts, args.requests, 20261127 + round_)
            results[name].append(numbers)
            print(round_, f"{name:8s}", "  ".join(f"{k} {v:.2f}" for k, v in numbers.items()),
                  flush=True)
    for key in results["this"][0]:
        base = statistics.median(r[key] for r in results["baseline"])
        this = statistics.median(r[key] for r in results["this"])
        print(f"{key:24s} baseline {base:9.2f}  this {this:9.2f}  ({(this / base - 1):+.1%})")


if __name__ == "__main__":
    main()
