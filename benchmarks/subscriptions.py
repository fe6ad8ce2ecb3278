"""Subscription notifications: commit-to-delivery latency of a rest-hook subscription on
Observation at a steady write rate, beside the same run's plain write rate as the baseline.

    python -m benchmarks.subscriptions --backends sqlite,postgresql --rate 500 --seconds 10

A ``hygeia serve`` (``--outbound-allow 127.0.0.1``) gets one topic-based rest-hook
subscription on Observation (id-only payload, ``backport-max-count`` 50), whose
endpoint is an HTTP server in this process. Observations then *arrive* at
``--rate`` per second for ``--seconds``, on a fixed schedule (open loop: arrival k
is due at k / rate, whatever became of the earlier ones), and are sent over
``--clients`` concurrent keep-alive connections (default 24), as many monitors and
apps would write: an arrival waits only while every connection is busy, and is then
counted late. A few closed-loop clients (each waiting for its answer before the
next write) cannot ask for more than clients / write latency: 8 of them at the
40 ms a durable write took under load on PostgreSQL made 200 a second, whatever
the server could do. Concurrent writers also let the database's group commit
share one flush between the writes that commit together. The
writers run in a process of their own, so their CPU does not delay the endpoint's
clock. Each notification event carries its timestamp (the version's lastUpdated,
set at commit); the latency of an event is its arrival at the endpoint minus that
timestamp (same machine, same clock). Reported: events delivered, p50/p99 latency,
the rate actually written, the writes' own latency, and the server's CPU time (all
its processes, from /proc) per event written.

The baseline is the same writers, driven the same way (same rate, same clients),
against a server without any subscription, on a fresh database of the same backend,
in the same run and round: its written rate and server CPU per Observation are
printed beside the subscription's, with their ratios.

``--baseline SRC`` (another checkout's ``src``, e.g. ``git archive main src | tar -x
-C /tmp/base``) also measures that checkout's server on the same workload, in turn
with this one for ``--rounds`` rounds (the order alternating), so the two compare on
the same machine load. ``--workers N`` serves with N processes. The endpoint speaks
HTTP/1.1 and keeps connections open, as a real webhook receiver does.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import multiprocessing
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from benchmarks.common import (
    DEFAULT_PG,
    Server,
    cpu_seconds,
    drop_postgres_db,
    fresh_postgres_db,
)

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
OBSERVATION = orjson.dumps({
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "valueQuantity": {"value": 72, "unit": "/min"}})


class Endpoint:
    """The rest-hook endpoint: notes each event's latency as it arrives."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                arrived = time.time()
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                owner.note(body, arrived)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def note(self, notification: dict[str, Any], arrived: float) -> None:
        for parameter in notification["entry"][0]["resource"]["parameter"]:
            if parameter["name"] == "notification-event":
                stamp = next(p["valueInstant"] for p in parameter["part"]
                             if p["name"] == "timestamp")
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                with self.lock:
                    self.latencies.append(arrived - at)

    def close(self) -> None:
        self.server.shutdown()


def subscribe(base: str, endpoint: str) -> None:
    created = httpx.post(f"{base}/Subscription", timeout=30, json={
        "resourceType": "Subscription", "status": "requested", "reason": "benchmark",
        "criteria": "urn:hygeia:topic:Observation",
        "channel": {"type": "rest-hook", "endpoint": endpoint,
                    "payload": "application/fhir+json",
                    "extension": [{"url": f"{BACKPORT}/backport-max-count",
                                   "valuePositiveInt": 50}],
                    "_payload": {"extension": [{"url": f"{BACKPORT}/backport-payload-content",
                                                "valueCode": "id-only"}]}}})
    created.raise_for_status()
    id = created.json()["id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/Subscription/{id}", timeout=30).json()["status"] != "active":
        if time.monotonic() > deadline:
            raise RuntimeError("the subscription did not become active")
        time.sleep(0.05)


@dataclass(frozen=True)
class Written:
    """What the writers did: Observations created, and how the writes went."""

    written: int
    asked: int
    seconds: float  # from the first arrival due to the last answer
    asked_seconds: float
    late: int  # arrivals sent more than 10 ms after they were due (every client busy)
    write_p50_ms: float
    write_p99_ms: float

    @property
    def rate(self) -> float:
        """Observations written per second, over the time asked or, when the writers
        fell behind, the longer time they took."""
        return self.written / max(self.seconds, self.asked_seconds)

    @property
    def asked_rate(self) -> float:
        return self.asked / self.asked_seconds

    def line(self) -> str:
        return (f"write p50 {self.write_p50_ms:.0f} ms, p99 {self.write_p99_ms:.0f} ms, "
                f"{self.late:,} of {self.asked:,} arrivals sent late")


def write(base: str, clients: int, rate: float, seconds: float) -> Written:
    """Create Observations arriving at ``rate`` per second for ``seconds``, in another
    process (see :func:`drive`), so the writers' CPU does not delay the endpoint's clock."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        written: Written = pool.apply(drive, (base, clients, rate, seconds))
    return written


def drive(base: str, clients: int, rate: float, seconds: float) -> Written:
    """Open-loop arrivals: Observation number k is due at ``k / rate`` seconds, whatever
    became of the earlier ones, and is sent by whichever of ``clients`` connections is
    free (like that many monitors and apps writing at once); an arrival waits only while
    every connection is busy, and is then counted late. ``rate`` 0: each connection
    writes back to back (closed loop). http.client, not httpx: httpx costs about 1.4 ms
    of client CPU per request (benchmarks/common.py), which the server could not use."""
    asked = int(rate * seconds) if rate else 1 << 62
    arrivals = itertools.count()  # next() is atomic under the GIL
    address = urlsplit(base)
    times: list[float] = []
    late = [0]
    lock = threading.Lock()
    start = time.monotonic() + 0.1

    def client() -> None:
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1",
                                                address.port, timeout=60)
        mine: list[float] = []
        tardy = 0
        while (k := next(arrivals)) < asked:
            due = start + k / rate if rate else time.monotonic()
            if due - start >= seconds:
                break
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif pause < -0.010:
                tardy += 1
            sent = time.monotonic()
            connection.request("POST", f"{address.path}/Observation", body=OBSERVATION,
                               headers={"Content-Type": "application/fhir+json"})
            response = connection.getresponse()
            content = response.read()
            if response.status != 201:
                raise RuntimeError(f"create: {response.status} {content[:300]!r}")
            mine.append(time.monotonic() - sent)
        connection.close()
        with lock:
            times.extend(mine)
            late[0] += tardy

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    ms = [value * 1000 for value in times]
    return Written(len(ms), asked if rate else len(ms), elapsed, seconds, late[0],
                   percentile(ms, 0.5), percentile(ms, 0.99))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def database(backend: str, admin: str, name: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder}/{name}.db"
    return fresh_postgres_db(admin, name)


@dataclass(frozen=True)
class Result:
    writes: Written
    notified: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu_ms_per_event: float

    def line(self) -> str:
        w = self.writes
        return (f"{w.rate:,.0f} Observations/s written (asked {w.asked_rate:,.0f}/s), "
                f"{self.notified:,} of {w.written:,} notified; commit-to-delivery p50 "
                f"{self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, mean {self.mean_ms:.0f} ms; "
                f"{w.line()}; server CPU {self.cpu_ms_per_event:.2f} ms per Observation")


def plain_writes(url: str, source: Path | None, clients: int, rate: float, seconds: float,
                 workers: int) -> tuple[Written, float]:
    """The baseline: the same writers on a server with no subscription; returns what they
    wrote and the server's CPU milliseconds per Observation."""
    server = Server(url, "--workers", str(workers), source=source)
    try:
        before = cpu_seconds(server.process.pid)
        written = write(server.base, clients, rate, seconds)
        cpu = cpu_seconds(server.process.pid) - before
    finally:
        server.stop()
    return written, cpu * 1000 / max(1, written.written)


def notifications(url: str, source: Path | None, clients: int, rate: float,
                  seconds: float, workers: int) -> Result:
    """One server (of ``source``, default this checkout) on ``url``: subscribe, write at
    ``rate``, wait for every notification (up to a minute)."""
    endpoint = Endpoint()
    server = Server(url, "--outbound-allow", "127.0.0.1", "--subscription-poll-seconds",
                    "0.2", "--workers", str(workers), source=source)
    try:
        subscribe(server.base, endpoint.url)
        before = cpu_seconds(server.process.pid)
        written = write(server.base, clients, rate, seconds)
        deadline = time.monotonic() + 60
        while len(endpoint.latencies) < written.written and time.monotonic() < deadline:
            time.sleep(0.1)
        cpu = cpu_seconds(server.process.pid) - before
    finally:
        server.stop()
        endpoint.close()
    ms = [value * 1000 for value in endpoint.latencies]
    return Result(written, len(ms), percentile(ms, 0.5), percentile(ms, 0.99),
                  statistics.fmean(ms) if ms else 0.0, cpu * 1000 / max(1, written.written))


def measure(backend: str, admin: str, clients: int, rate: float, seconds: float,
            workers: int = 1, baseline_source: Path | None = None, rounds: int = 1) -> None:
    """Per round: the plain-write baseline, then each arm with a subscription, on fresh
    databases; the order of the arms alternates between rounds."""
    arms: list[tuple[str, Path | None]] = [("this", None)]
    if baseline_source is not None:
        arms.append(("baseline", baseline_source))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        names = [f"subs_bench_{n}" for n in range(rounds * (len(arms) + 1))]
        urls = [database(backend, admin, name, folder) for name in names]
        results: dict[str, list[Result]] = {label: [] for label, _ in arms}
        plain: list[tuple[Written, float]] = []
        try:
            fresh = iter(urls)
            for round in range(rounds):
                plain.append(plain_writes(next(fresh), None, clients, rate, seconds, workers))
                print(f"{backend} round {round + 1} plain writes, no subscription: "
                      f"{plain[-1][0].rate:,.0f} Observations/s written (asked "
                      f"{rate:,.0f}/s); {plain[-1][0].line()}; server CPU "
                      f"{plain[-1][1]:.2f} ms per Observation", flush=True)
                for label, source in arms if round % 2 == 0 else arms[::-1]:
                    result = notifications(next(fresh), source, clients, rate, seconds,
                                           workers)
                    results[label].append(result)
                    print(f"{backend} round {round + 1} {label}: {result.line()}", flush=True)
        finally:
            if backend != "sqlite":
                for name in names:
                    drop_postgres_db(admin, name)
    base_rate = statistics.median(w.rate for w, _ in plain)
    base_cpu = statistics.median(cpu for _, cpu in plain)
    for label, found in results.items():
        written = statistics.median(r.writes.rate for r in found)
        cpu = statistics.median(r.cpu_ms_per_event for r in found)
        print(f"{backend} {label} (workers {workers}, {clients} clients, open loop at "
              f"{rate:,.0f}/s, median of {len(found)}): {written:,.0f} Observations/s "
              f"written, commit-to-delivery p50 "
              f"{statistics.median(r.p50_ms for r in found):.0f} ms, "
              f"p99 {statistics.median(r.p99_ms for r in found):.0f} ms, "
              f"server CPU {cpu:.2f} ms per Observation, {sum(r.notified for r in found):,} "
              f"of {sum(r.writes.written for r in found):,} notified | baseline, the same "
              f"writers without a subscription: {base_rate:,.0f} Observations/s written "
              f"({written / max(base_rate, 1e-9):.2f}x), server CPU {base_cpu:.2f} ms per "
              f"Observation ({cpu / max(base_cpu, 1e-9):.2f}x)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--clients", type=int, default=24,
                        help="concurrent writers' connections (the front end allows 32 "
                             "per client address)")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="Observations per second, arriving on a fixed schedule")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="serving processes")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout's src folder to compare with, in turn")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    for backend in args.backends.split(","):
        measure(backend, args.postgres, args.clients, args.rate, args.seconds, args.workers,
                args.baseline, args.rounds)


if __name__ == "__main__":
    main()
