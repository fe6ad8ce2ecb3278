"""Search benchmark: a seeded mix of typical clinical queries against a real server.

Loads ~1,000 patients (the Synthea bundles in ../shared/data/synthea-r4,
amplified with re-identified copies) into SQLite and PostgreSQL, then sends a
fixed, seeded mix of queries from 4 concurrent clients and prints p50/p95 per
query type, overall requests/s and the server's peak memory.  The baseline in
the same run is a primary-key read (``GET Patient/{id}``) through the same
server: the floor for any request.

    python -m benchmarks.search [--patients 1000] [--requests 2000] [--backends sqlite,postgresql]
        [--reuse DIR]

``--reuse DIR`` keeps the loaded databases between runs (the SQLite file and the
patient facts in DIR, a PostgreSQL database named after DIR): the first run
loads and the next ones only query, against a freshly started server, so the
printed peak memory then covers the queries alone.  The baseline row is always
measured in the same run as the queries.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    Server,
    bundle_files,
    fresh_postgres_db,
    read_bytes,
    reidentify,
    timed_get,
)

LOINC = "http://loinc.org"
HEADERS = {"Content-Type": "application/fhir+json"}


def copies(bodies: list[bytes], patients: int) -> list[bytes]:
    """Re-identified copies of the bundles (fresh UUIDs everywhere) up to ``patients``."""
    out: list[bytes] = []
    for copy in range(patients // len(bodies) + 1):
        for body in bodies:
            if len(out) >= patients:
                return out
            out.append(reidentify(body, copy))
    return out


def load(base: str, bodies: list[bytes]) -> tuple[list[dict[str, Any]], float]:
    """Post every bundle as a transaction (2 at a time); return patient facts and seconds."""
    facts: list[dict[str, Any]] = []

    def post(body: bytes) -> dict[str, Any]:
        bundle = orjson.loads(body)
        response = client.post(base + "/", content=body, headers=HEADERS)
        response.raise_for_status()
        return _facts(bundle, response.json())

    started = time.perf_counter()
    with httpx.Client(timeout=600) as client, ThreadPoolExecutor(2) as pool:
        facts = list(pool.map(post, bodies))
    return facts, time.perf_counter() - started


def _facts(bundle: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """What the query mix needs about one patient: id, name, birth date, codes seen."""
    patient_index = next(i for i, e in enumerate(bundle["entry"])
                         if e["resource"]["resourceType"] == "Patient")
    patient = bundle["entry"][patient_index]["resource"]
    codes = sorted({c["code"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Observation"
                    for c in e["resource"]["code"].get("coding", [])})
    conditions = sorted({c["code"] for e in bundle["entry"]
                         if e["resource"]["resourceType"] == "Condition"
                         for c in e["resource"]["code"].get("coding", [])})
    return {"id": response["entry"][patient_index]["fullUrl"].rsplit("/", 1)[1],
            "family": patient["name"][0]["family"], "birthDate": patient["birthDate"],
            "codes": codes or ["8302-2"], "conditions": conditions or ["44054006"]}


QUERY_TYPES = ("read-baseline", "patient-name-birthdate", "obs-patient-code-dates",
               "vitals-sorted", "value-threshold", "composite-bp", "encounter-include",
               "has-condition", "revinclude", "everything")


def request_for(kind: str, fact: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, str]]:
    pid, code = fact["id"], rng.choice(fact["codes"])
    if kind == "read-baseline":
        return f"Patient/{pid}", {}
    if kind == "patient-name-birthdate":
        return "Patient", {"family": fact["family"], "birthdate": fact["birthDate"]}
    if kind == "obs-patient-code-dates":
        return "Observation", {"patient": pid, "code": f"{LOINC}|{code}",
                               "date": "ge2000-01-01", "_count": "50"}
    if kind == "vitals-sorted":
        return "Observation", {"patient": pid, "category": "vital-signs", "_sort": "-date",
                               "_count": "20"}
    if kind == "value-threshold":
        return "Observation", {"code": f"{LOINC}|8302-2", "value-quantity": "gt180",
                               "_count": "20", "_total": "none"}
    if kind == "composite-bp":
        return "Observation", {"component-code-value-quantity": f"{LOINC}|8480-6$gt140",
                               "_count": "20", "_total": "none"}
    if kind == "encounter-include":
        return "Encounter", {"patient": pid, "_include": "Encounter:service-provider",
                             "_count": "20"}
    if kind == "has-condition":
        return "Patient", {"_has:Condition:patient:code": rng.choice(fact["conditions"]),
                           "_count": "20", "_total": "none"}
    if kind == "revinclude":
        return "Patient", {"_id": pid, "_revinclude": "Encounter:patient"}
    return f"Patient/{pid}/$everything", {"_count": "100"}


def run_mix(base: str, facts: list[dict[str, Any]], requests: int, clients: int,
            seed: int) -> tuple[dict[str, list[float]], float]:
    rng = random.Random(seed)
    plan = [(kind, *request_for(kind, rng.choice(facts), rng))
            for kind in (rng.choice(QUERY_TYPES) for _ in range(requests))]
    timings: dict[str, list[float]] = {kind: [] for kind in QUERY_TYPES}

    address = urlsplit(base)
    local = threading.local()

    def send(item: tuple[str, str, dict[str, str]]) -> tuple[str, float]:
        """One request on this client thread's own keep-alive connection."""
        kind, path, params = item
        target = f"{address.path}/{path}" + (f"?{urlencode(params)}" if params else "")
        elapsed = timed_get(local, address, target, kind)
        return kind, elapsed

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, plan[:20]))  # warm up connections and caches
        started = time.perf_counter()
        for kind, elapsed in pool.map(send, plan):
            timings[kind].append(elapsed)
        wall = time.perf_counter() - started
    return timings, requests / wall


def report(backend: str, timings: dict[str, list[float]], rate: float, memory: tuple[float, float],
           load_rate: float | None) -> None:
    loaded = (f"load {load_rate:,.0f} resources/s" if load_rate is not None
              else "database reused (memory covers queries only)")
    pss, hwm = memory
    print(f"\n== {backend}: {rate:,.0f} requests/s overall (4 clients), server peak memory "
          f"{pss:.0f} MB (total PSS of its processes, sampled; VmHWM sum {hwm:.0f} MB), "
          f"{loaded}")
    print(f"  {'query type':<26}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}")
    for kind, values in timings.items():
        if values:
            ordered = sorted(values)
            p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
            print(f"  {kind:<26}{len(values):>6}{statistics.median(values) * 1000:>10.1f}"
                  f"{p95 * 1000:>10.1f}")


def database_url(backend: str, folder: Path, args: argparse.Namespace, fresh: bool) -> str:
    """The database for ``backend``: in ``folder`` for SQLite, a named one on PostgreSQL.

    A reused PostgreSQL database is named after the folder, so runs from different
    folders (or worktrees) never drop each other's data.
    """
    if backend == "sqlite":
        path = folder / "search.db"
        if fresh:
            for stale in folder.glob("search.db*"):
                stale.unlink()
        return f"sqlite:///{path}?synchronous=normal"
    name = "hygeia_bench_search"
    if args.reuse is not None:
        name += "_" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    if fresh:
        return fresh_postgres_db(args.postgres, name)
    return args.postgres.rsplit("/", 1)[0] + f"/{name}"


def saved_facts(folder: Path | None, backend: str, patients: int
                ) -> list[dict[str, Any]] | None:
    """The facts of an earlier load of the same size into ``folder``, if any."""
    if folder is None:
        return None
    path = folder / f"facts-{backend}.json"
    if not path.exists():
        return None
    saved = orjson.loads(path.read_bytes())
    return saved["facts"] if saved.get("patients") == patients else None


def run_backend(backend: str, folder: Path, bodies: list[bytes], resources: int,
                args: argparse.Namespace) -> None:
    facts = saved_facts(args.reuse, backend, len(bodies))
    server = Server(database_url(backend, folder, args, fresh=facts is None))
    try:
        load_rate = None
        if facts is None:
            facts, seconds = load(server.base, bodies)
            load_rate = resources / seconds
            if args.reuse is not None:
                (folder / f"facts-{backend}.json").write_bytes(
                    orjson.dumps({"patients": len(bodies), "facts": facts}))
        timings, rate = run_mix(server.base, facts, args.requests, args.clients, args.seed)
        report(backend, timings, rate, (server.peak_pss_mb(), server.peak_rss_mb()), load_rate)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--reuse", type=Path, default=None, metavar="DIR",
                        help="keep the loaded databases in DIR and reuse them in later runs")
    args = parser.parse_args()
    bodies = copies([read_bytes(p) for p in bundle_files(args.data)
                     if b'"Patient"' in read_bytes(p)], args.patients)
    resources = sum(len(orjson.loads(b)["entry"]) for b in bodies)
    print(f"{len(bodies)} patients, {resources:,} resources")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if args.reuse is None else args.reuse
        folder.mkdir(parents=True, exist_ok=True)
        for backend in args.backends.split(","):
            run_backend(backend, folder, bodies, resources, args)


if __name__ == "__main__":
    main()
