"""Audit benchmark: what recording every read costs, against the same server without it.

Loads a small synthetic population (patients with observations) once per
backend, copies the database for each mode, and starts one real server per
mode on its copy:

* ``off``: no audit trail (the baseline, measured in the same run);
* ``durable``: ``--audit``: every response waits until its AuditEvent is
  committed (group commit by the outbox thread);
* ``async``: ``--audit --audit-async``: events are committed in the
  background; a crash can lose those still queued.

The same seeded mix of reads (``GET Patient/id``, ``GET Observation/id``) and
searches (``Observation?patient=id``) is sent from ``--clients`` concurrent
clients to each server in turn, for ``--rounds`` interleaved rounds so drift
on a shared machine hits every mode alike.  Prints p50/p95 per request kind,
requests/s and the ratio to ``off``, and checks afterwards that each audited
server stored one AuditEvent per request.

    python -m benchmarks.audit [--patients 300] [--requests 3000] [--clients 4]
        [--rounds 2] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from benchmarks.common import DEFAULT_PG, Server, drop_postgres_db, fresh_postgres_db, timed_get

MODES = {"off": (), "durable": ("--audit",), "async": ("--audit", "--audit-async")}
KINDS = ("read Patient", "read Observation", "search Observation?patient")
OBSERVATIONS = 5  # per patient


def population(patients: int) -> list[dict[str, Any]]:
    """Transaction Bundles of 20 patients each, with their observations."""
    bundles = []
    for start in range(0, patients, 20):
        entries: list[dict[str, Any]] = []
        for _ in range(start, min(start + 20, patients)):
            ref = f"urn:uuid:{uuid.uuid4()}"
            entries.append({"fullUrl": ref, "request": {"method": "POST", "url": "Patient"},
                            "resource": {"resourceType": "Patient",
                                         "name": [{"family": "Bench"}]}})
            entries += [{"request": {"method": "POST", "url": "Observation"}, "resource": {
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": ref},
                "valueQuantity": {"value": 60 + n, "unit": "/min"}}}
                for n in range(OBSERVATIONS)]
        bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return bundles


def load(base: str, bundles: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Post the bundles; returns (patient id, one of its observation ids) pairs."""
    pairs = []
    with httpx.Client(timeout=600) as client:
        for bundle in bundles:
            response = client.post(f"{base}/", content=orjson.dumps(bundle),
                                   headers={"Content-Type": "application/fhir+json"})
            response.raise_for_status()
            ids = [e["response"]["location"].split("/")[-3] for e in response.json()["entry"]]
            step = OBSERVATIONS + 1
            pairs += [(ids[i], ids[i + 1]) for i in range(0, len(ids), step)]
    return pairs


def plan(pairs: list[tuple[str, str]], requests: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    items = []
    for _ in range(requests):
        kind = rng.choice(KINDS)
        pid, oid = rng.choice(pairs)
        target = {"read Patient": f"Patient/{pid}", "read Observation": f"Observation/{oid}",
                  "search Observation?patient": "Observation?" + urlencode({"patient": pid})}
        items.append((kind, target[kind]))
    return items


def run(base: str, items: list[tuple[str, str]], clients: int
        ) -> tuple[dict[str, list[float]], float]:
    address = urlsplit(base)
    local = threading.local()

    def send(item: tuple[str, str]) -> tuple[str, float]:
        kind, path = item
        elapsed = timed_get(local, address, f"{address.path}/{path}", kind)
        return kind, elapsed

    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        for kind, elapsed in pool.map(send, items):
            timings[kind].append(elapsed)
        wall = time.perf_counter() - started
    return timings, len(items) / wall


def copies(backend: str, folder: Path, args: argparse.Namespace
           ) -> tuple[dict[str, str], list[tuple[str, str]], list[str]]:
    """One loaded database per mode (URLs), the ids to ask for, databases to drop."""
    if backend == "sqlite":
        seed_url = f"sqlite:///{folder}/seed.db"
    else:
        seed_url = fresh_postgres_db(args.postgres, "hygeia_audit_seed")
    server = Server(seed_url, cwd=folder)
    try:
        pairs = load(server.base, population(args.patients))
    finally:
        server.stop()
    urls, drop = {}, ["hygeia_audit_seed"] if backend != "sqlite" else []
    if backend == "sqlite":  # the log into the file, so one file copy holds everything
        import sqlite3

        with sqlite3.connect(folder / "seed.db") as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    for mode in MODES:
        if backend == "sqlite":
            shutil.copy(folder / "seed.db", folder / f"{mode}.db")
            urls[mode] = f"sqlite:///{folder}/{mode}.db"
        else:
            name = f"hygeia_audit_{mode}"
            urls[mode] = _postgres_copy(args.postgres, name)
            drop.append(name)
    return urls, pairs, drop


def _postgres_copy(admin: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "hygeia_audit_seed"')
    return admin.rsplit("/", 1)[0] + f"/{name}"


def audit_events(url: str) -> int:
    """Committed AuditEvents: stored as resources, or still waiting in the outbox (moved at
    the next start; the server may be stopped before its mover has caught up)."""
    sql = ("SELECT (SELECT COUNT(*) FROM resource WHERE res_type = 'AuditEvent') + "
           "(SELECT COUNT(*) FROM audit_outbox)")
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            return int(connection.execute(sql).fetchone()[0])
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute(sql).fetchone()
        return int(row[0]) if row else 0


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hygeia-audit-bench-") as tmp:
        folder = Path(tmp)
        urls, pairs, drop = copies(backend, folder, args)
        servers = {mode: Server(urls[mode], *extra, cwd=folder)
                   for mode, extra in MODES.items()}
        timings: dict[str, dict[str, list[float]]] = {mode: {kind: [] for kind in KINDS}
                                                      for mode in MODES}
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        sent = dict.fromkeys(MODES, 0)
        try:
            for mode, server in servers.items():  # warm up connections and caches
                run(server.base, plan(pairs, 100, 0), args.clients)
                sent[mode] += 100
            for round_ in range(args.rounds):
                items = plan(pairs, args.requests, 1 + round_)
                for mode, server in servers.items():
                    measured, rate = run(server.base, items, args.clients)
                    for kind, values in measured.items():
                        timings[mode][kind] += values
                    rates[mode].append(rate)
                    sent[mode] += len(items)
        finally:
            for server in servers.values():
                server.stop()
        report(backend, args, timings, rates)
        for mode in ("durable", "async"):
            stored = audit_events(urls[mode])
            print(f"  {mode}: {stored:,} AuditEvents stored for {sent[mode]:,} requests "
                  f"({'complete' if stored == sent[mode] else 'MISSING'}, "
                  "counted after the server stopped)")
        for name in drop:
            drop_postgres_db(args.postgres, name)


def report(backend: str, args: argparse.Namespace, timings: dict[str, dict[str, list[float]]],
           rates: dict[str, list[float]]) -> None:
    print(f"\n{backend}: {args.patients} patients x {OBSERVATIONS} observations, "
          f"{args.clients} clients, {args.rounds} x {args.requests} requests per mode")
    header = f"  {'mode':<8} {'req/s':>7} {'ratio':>6}"
    for kind in KINDS:
        header += f" | {kind + ' p50/p95 ms':>38}"
    print(header)
    base = statistics.mean(rates["off"])
    for mode in MODES:
        rate = statistics.mean(rates[mode])
        line = f"  {mode:<8} {rate:>7,.0f} {rate / base:>6.2f}"
        for kind in KINDS:
            values = sorted(timings[mode][kind])
            p50 = values[len(values) // 2] * 1000
            p95 = values[int(len(values) * 0.95)] * 1000
            line += f" | {p50:>30.2f} / {p95:>5.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run_backend(backend, args)


if __name__ == "__main__":
    main()
