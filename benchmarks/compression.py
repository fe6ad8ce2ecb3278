"""What gzip costs and saves: the CapabilityStatement and a 50-entry search Bundle,
each fetched alternately with ``Accept-Encoding: identity`` and ``gzip`` from one
server on SQLite, so both see the same machine load.  Prints bytes on the wire
and the median time to the last byte (loopback: the network costs nothing here,
so the time column shows the CPU cost; on a real network the bytes dominate).

    python -m benchmarks.compression [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from benchmarks.common import Server


def _fetch(client: httpx.Client, target: str, coding: str) -> tuple[int, float]:
    started = time.perf_counter()
    with client.stream("GET", target, headers={"Accept-Encoding": coding}) as response:
        raw = b"".join(response.iter_raw())
    return len(raw), time.perf_counter() - started


def _patients(client: httpx.Client, count: int) -> None:
    for n in range(count):
        patient = {"resourceType": "Patient", "name": [{"family": "Bench", "given": [f"P{n}"]}],
                   "gender": "female", "birthDate": "1970-01-01",
                   "identifier": [{"system": "urn:bench", "value": str(n)}],
                   "address": [{"line": [f"{n} Main Street"], "city": "Springfield"}]}
        client.post("Patient", content=orjson.dumps(patient),
                    headers={"Content-Type": "application/fhir+json"}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = Server(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            with httpx.Client(base_url=server.base + "/", timeout=60) as client:
                _patients(client, 50)
                for name, target in (("metadata", "metadata"),
                                     ("search, 50 entries", "Patient?_count=50")):
                    _compare(client, name, target, args.rounds)
        finally:
            server.stop()


def _compare(client: httpx.Client, name: str, target: str, rounds: int) -> None:
    sizes: dict[str, int] = {}
    times: dict[str, list[float]] = {"identity": [], "gzip": []}
    for _ in range(rounds):
        for coding in times:
            sizes[coding], seconds = _fetch(client, target, coding)
            times[coding].append(seconds)
    plain, coded = (statistics.median(times[c]) * 1000 for c in ("identity", "gzip"))
    print(f"{name:20} identity {sizes['identity']:>8} B {plain:6.1f} ms | "
          f"gzip {sizes['gzip']:>7} B {coded:6.1f} ms | "
          f"{sizes['identity'] / sizes['gzip']:.1f}x smaller, {coded - plain:+.1f} ms")


if __name__ == "__main__":
    main()
