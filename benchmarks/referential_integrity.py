"""Referential integrity benchmark: write throughput with ``--referential-integrity``
against the same server without it, measured in the same run.

One server per mode (``off``: the baseline; ``on``: ``--referential-integrity``),
each on a fresh database seeded with the same Patients and Practitioners.  Each
round sends the same work to each mode in turn (interleaved, so drift on a
shared machine hits both alike, and which goes first alternates), from
``--clients`` concurrent clients:

* ``create``: ``POST Observation`` with two local references (subject, performer);
* ``transaction``: a Bundle of one Patient and 20 Observations referring to it
  by ``urn:uuid`` and to a stored Practitioner;
* ``delete``: ``DELETE`` of Observations created in the round (nothing refers
  to them: the cost is the referrers lookup).

Prints resources written per second per kind, for each mode, and the ratio
``on / off``.

    python -m benchmarks.referential_integrity [--creates 2000] [--transactions 100]
        [--clients 4] [--rounds 2] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.common import DEFAULT_PG, Server, drop_postgres_db, fresh_postgres_db

MODES = {"off": (), "on": ("--referential-integrity",)}
KINDS = ("create", "transaction", "delete")
SEED = 100  # Patients and Practitioners each
PER_BUNDLE = 20  # Observations per transaction
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def observation(subject: str, performer: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": subject}, "performer": [{"reference": performer}],
            "valueQuantity": {"value": 72, "unit": "/min"}}


def transaction(performer: str) -> dict[str, Any]:
    urn = f"urn:uuid:{uuid.uuid4()}"
    entries = [{"fullUrl": urn, "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient", "name": [{"family": "Bench"}]}}]
    entries += [{"request": {"method": "POST", "url": "Observation"},
                 "resource": observation(urn, performer)} for _ in range(PER_BUNDLE)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def seed(base: str) -> tuple[list[str], list[str]]:
    """Stored Patients and Practitioners (their ``Type/id``), in one transaction."""
    entries = [{"request": {"method": "POST", "url": kind}, "resource": {"resourceType": kind}}
               for kind in ("Patient", "Practitioner") for _ in range(SEED)]
    response = httpx.post(f"{base}/", headers=FHIR_JSON, timeout=600, content=orjson.dumps(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    response.raise_for_status()
    written = ["/".join(e["response"]["location"].split("/")[-4:-2])
               for e in response.json()["entry"]]
    return written[:SEED], written[SEED:]


class Clients:
    """One keep-alive httpx client per thread, against one server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.local = threading.local()

    def client(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(base_url=self.base + "/", timeout=600)
        return client


def timed(work: list[Callable[[httpx.Client], int]], clients: Clients, threads: int,
          ) -> float:
    """Resources written per second by ``work`` (each item returns how many it wrote)."""
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        written = sum(pool.map(lambda item: item(clients.client()), work))
        return written / (time.perf_counter() - started)


def create_work(patients: list[str], practitioners: list[str], count: int,
                created: list[str]) -> list[Callable[[httpx.Client], int]]:
    def one(n: int) -> Callable[[httpx.Client], int]:
        def send(client: httpx.Client) -> int:
            body = observation(patients[n % len(patients)], practitioners[n % SEED])
            response = client.post("Observation", content=orjson.dumps(body),
                                    headers=FHIR_JSON)
            if response.status_code != 201:
                raise RuntimeError(f"create: {response.status_code} {response.text[:300]}")
            created.append(f"Observation/{response.json()['id']}")
            return 1
        return send
    return [one(n) for n in range(count)]


def transaction_work(practitioners: list[str], count: int
                     ) -> list[Callable[[httpx.Client], int]]:
    def one(n: int) -> Callable[[httpx.Client], int]:
        def send(client: httpx.Client) -> int:
            response = client.post("", content=orjson.dumps(
                transaction(practitioners[n % SEED])), headers=FHIR_JSON)
            if response.status_code != 200:
                raise RuntimeError(f"transaction: {response.status_code} "
                                   f"{response.text[:300]}")
            return 1 + PER_BUNDLE
        return send
    return [one(n) for n in range(count)]


def delete_work(targets: list[str]) -> list[Callable[[httpx.Client], int]]:
    def one(target: str) -> Callable[[httpx.Client], int]:
        def send(client: httpx.Client) -> int:
            response = client.delete(target)
            if response.status_code != 204:
                raise RuntimeError(f"delete: {response.status_code} {response.text[:300]}")
            return 1
        return send
    return [one(target) for target in targets]


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hygeia-ri-bench-") as tmp:
        folder = Path(tmp)
        urls = {mode: (f"sqlite:///{folder}/{mode}.db" if backend == "sqlite" else
                       fresh_postgres_db(args.postgres, f"hygeia_ri_{mode}"))
                for mode in MODES}
        servers = {mode: Server(urls[mode], *extra, cwd=folder)
                   for mode, extra in MODES.items()}
        rates: dict[str, dict[str, list[float]]] = {mode: {kind: [] for kind in KINDS}
                                                    for mode in MODES}
        try:
            seeded = {mode: seed(server.base) for mode, server in servers.items()}
            for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
                order = list(servers) if round_ % 2 else list(reversed(servers))
                for mode in order:  # who goes first alternates: no mode always runs warm
                    server = servers[mode]
                    clients = Clients(server.base)
                    patients, practitioners = seeded[mode]
                    created: list[str] = []
                    measured = {
                        "create": timed(create_work(patients, practitioners, args.creates,
                                                    created), clients, args.clients),
                        "transaction": timed(transaction_work(practitioners,
                                                              args.transactions),
                                             clients, args.clients),
                        "delete": timed(delete_work(created), clients, args.clients),
                    }
                    if round_:
                        for kind, rate in measured.items():
                            rates[mode][kind].append(rate)
        finally:
            for server in servers.values():
                server.stop()
            if backend != "sqlite":
                for mode in MODES:
                    drop_postgres_db(args.postgres, f"hygeia_ri_{mode}")
        report(backend, args, rates)


def report(backend: str, args: argparse.Namespace,
           rates: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{backend}: {args.clients} clients, {args.rounds} rounds of {args.creates} "
          f"creates, {args.transactions} transactions of {1 + PER_BUNDLE} resources and "
          "the creates' deletes; resources written per second")
    print(f"  {'kind':<12} {'off (baseline)':>15} {'on':>10} {'on / off':>9}")
    for kind in KINDS:
        off = statistics.mean(rates["off"][kind])
        on = statistics.mean(rates["on"][kind])
        print(f"  {kind:<12} {off:>15,.0f} {on:>10,.0f} {on / off:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--transactions", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run_backend(backend, args)


if __name__ == "__main__":
    main()
