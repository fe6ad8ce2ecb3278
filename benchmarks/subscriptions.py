"""Subscription notifications: commit-to-delivery latency of a rest-hook subscription on
Observation at a steady write rate, beside the same run's plain write rate as the baseline.

    python -m benchmarks.subscriptions --backends sqlite,postgresql --rate 500 --seconds 10

A ``hygeia serve`` (``--outbound-allow 127.0.0.1``) gets one topic-based rest-hook
subscription on Observation (id-only payload, ``backport-max-count`` 50), whose
endpoint is an HTTP server in this process. ``--clients`` threads then create
Observations at ``--rate`` per second in total for ``--seconds``. Each notification
event carries its timestamp (the version's lastUpdated, set at commit); the
latency of an event is its arrival at the endpoint minus that timestamp (same
machine, same clock). Reported: events delivered, p50/p99 latency, and the rate
actually written, and the server's CPU time (all its processes, from /proc) per
event written. The baseline is the highest rate the same clients write without
any subscription, on a fresh database of the same backend, in the same run.

``--baseline SRC`` (another checkout's ``src``, e.g. ``git archive main src | tar -x
-C /tmp/base``) also measures that checkout's server on the same workload, in turn
with this one for ``--rounds`` rounds (the order alternating), so the two compare on
the same machine load. ``--workers N`` serves with N processes. The endpoint speaks
HTTP/1.1 and keeps connections open, as a real webhook receiver does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


def write(base: str, clients: int, rate: float, seconds: float) -> int:
    """Create Observations at ``rate`` per second in total (0: as fast as possible)."""
    written = [0] * clients
    start = time.monotonic()

    def client(index: int) -> None:
        interval = clients / rate if rate else 0.0  # each client's share of the rate
        offset = index / rate if rate else 0.0  # clients spread over one interval
        with httpx.Client(timeout=30, headers={"Content-Type": "application/fhir+json"}) as http:
            n = 0
            while time.monotonic() - start < seconds:
                due = start + offset + n * interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                http.post(f"{base}/Observation", content=OBSERVATION).raise_for_status()
                n += 1
            written[index] = n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(written)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def database(backend: str, admin: str, name: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder}/{name}.db"
    return fresh_postgres_db(admin, name)


@dataclass(frozen=True)
class Result:
    written: int
    notified: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu_ms_per_event: float

    def line(self, seconds: float, rate: float) -> str:
        return (f"{self.written / seconds:,.0f} Observations/s written (asked {rate:,.0f}/s), "
                f"{self.notified:,} of {self.written:,} notified; commit-to-delivery p50 "
                f"{self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, mean {self.mean_ms:.0f} ms; "
                f"server CPU {self.cpu_ms_per_event:.2f} ms per Observation")


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
        while len(endpoint.latencies) < written and time.monotonic() < deadline:
            time.sleep(0.1)
        cpu = cpu_seconds(server.process.pid) - before
    finally:
        server.stop()
        endpoint.close()
    ms = [value * 1000 for value in endpoint.latencies]
    return Result(written, len(ms), percentile(ms, 0.5), percentile(ms, 0.99),
                  statistics.fmean(ms) if ms else 0.0, cpu * 1000 / max(1, written))


def measure(backend: str, admin: str, clients: int, rate: float, seconds: float,
            workers: int, baseline_source: Path | None, rounds: int) -> None:
    arms: list[tuple[str, Path | None]] = [("this", None)]
    if baseline_source is not None:
        arms.append(("baseline", baseline_source))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        names = ["bench_subs_base"] + [f"bench_subs_{n}" for n in range(rounds * len(arms))]
        urls = [database(backend, admin, name, folder) for name in names]
        results: dict[str, list[Result]] = {label: [] for label, _ in arms}
        try:
            server = Server(urls[0], "--workers", str(workers))
            try:
                plain = write(server.base, clients, 0, seconds) / seconds
            finally:
                server.stop()
            fresh = iter(urls[1:])
            for round in range(rounds):
                for label, source in arms if round % 2 == 0 else arms[::-1]:
                    result = notifications(next(fresh), source, clients, rate, seconds,
                                           workers)
                    results[label].append(result)
                    print(f"{backend} round {round + 1} {label}: "
                          f"{result.line(seconds, rate)}", flush=True)
        finally:
            if backend != "sqlite":
                for name in names:
                    drop_postgres_db(admin, name)
    for label, found in results.items():
        print(f"{backend} {label} (workers {workers}, median of {len(found)}): "
              f"p50 {statistics.median(r.p50_ms for r in found):.0f} ms, "
              f"p99 {statistics.median(r.p99_ms for r in found):.0f} ms, "
              f"server CPU {statistics.median(r.cpu_ms_per_event for r in found):.2f} ms "
              f"per Observation, {sum(r.notified for r in found):,} of "
              f"{sum(r.written for r in found):,} notified | baseline: {plain:,.0f} "
              "Observations/s written by the same clients without a subscription",
              flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=500.0, help="Observations per second")
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
