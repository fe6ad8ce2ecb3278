"""Single ``POST /fhir/Observation`` on PostgreSQL: creates/s and server CPU per create,
beside an older revision measured in the same run.

One client sending one create after another (every round trip to the database is
on the critical path), then ``--clients`` clients at once (commits share fsyncs).
The baseline is ``--against REV`` (default: the revision before ADR
core-write-round-trips) served from a fresh database of its own; the two servers
take turns, ``--rounds`` times each, and the medians and their ratio are printed,
with the server's CPU milliseconds per create (its process tree, from /proc: less
disturbed by other load on a busy machine than the rates).

    python -m benchmarks.single_writes [--creates 1000] [--clients 8] [--rounds 3]
        [--against REV]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path

import orjson

from benchmarks.common import (
    DEFAULT_PG,
    Server,
    cpu_seconds,
    drop_postgres_db,
    fresh_postgres_db,
    source_at,
)

BASELINE_REV = "1dd3f7f"  # before ADR core-write-round-trips
BODY = orjson.dumps({
    "resourceType": "Observation", "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                              "observation-category", "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                         "display": "Heart rate"}]},
    "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-01T10:00:00Z",
    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                      "code": "/min"}})
HEADERS = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}


def post_all(server: Server, creates: int, clients: int) -> tuple[float, float]:
    """(creates/s, server CPU ms per create) for ``creates`` POSTs from ``clients``."""
    port = int(server.base.split(":")[2].split("/")[0])

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(count):
            connection.request("POST", "/fhir/Observation", BODY, HEADERS)
            response = connection.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"POST answered {response.status}")
        connection.close()

    threads = [threading.Thread(target=client, args=(creates // clients,))
               for _ in range(clients)]
    cpu = cpu_seconds(server.process.pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    done = creates // clients * clients
    return done / elapsed, (cpu_seconds(server.process.pid) - cpu) * 1000 / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", default=BASELINE_REV, metavar="REV")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for label, source in ((args.against, source_at(args.against, Path(tmp))),
                              ("current", None)):
            url = fresh_postgres_db(args.postgres, f"core_bench_writes_{len(servers)}")
            servers[label] = Server(url, source=source)
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        try:
            for server in servers.values():  # warm up: connections, prepared statements
                post_all(server, 50, 1)
            for _ in range(args.rounds):
                for clients in (1, args.clients):
                    for label, server in servers.items():
                        results.setdefault((label, clients), []).append(
                            post_all(server, args.creates, clients))
        finally:
            for server in servers.values():
                server.stop()
            for number in range(len(servers)):
                drop_postgres_db(args.postgres, f"core_bench_writes_{number}")
    print(f"\n{'clients':>7} {'revision':>10} {'creates/s':>10} {'CPU ms/create':>14}  "
          f"(medians of {args.rounds} rounds of {args.creates} creates)")
    for clients in (1, args.clients):
        rates = {}
        for label in servers:
            runs = results[(label, clients)]
            rates[label] = statistics.median(rate for rate, _ in runs)
            cpu = statistics.median(ms for _, ms in runs)
            print(f"{clients:>7} {label:>10} {rates[label]:>10,.0f} {cpu:>14.2f}")
        print(f"{clients:>7} {'ratio':>10} {rates['current'] / rates[args.against]:>10.2f}")


if __name__ == "__main__":
    main()
