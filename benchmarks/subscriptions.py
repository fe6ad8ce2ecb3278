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
actually written. The baseline is the highest rate the same clients write without
any subscription, on a fresh database of the same backend, in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.common import DEFAULT_PG, Server, drop_postgres_db, fresh_postgres_db

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


def measure(backend: str, admin: str, clients: int, rate: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        names = ("bench_subs_base", "bench_subs")
        urls = [database(backend, admin, name, folder) for name in names]
        try:
            server = Server(urls[0])
            try:
                baseline = write(server.base, clients, 0, seconds) / seconds
            finally:
                server.stop()
            endpoint = Endpoint()
            server = Server(urls[1], "--outbound-allow", "127.0.0.1",
                            "--subscription-poll-seconds", "0.2")
            try:
                subscribe(server.base, endpoint.url)
                written = write(server.base, clients, rate, seconds)
                deadline = time.monotonic() + 60
                while len(endpoint.latencies) < written and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                server.stop()
                endpoint.close()
        finally:
            if backend != "sqlite":
                for name in names:
                    drop_postgres_db(admin, name)
    ms = [value * 1000 for value in endpoint.latencies]
    print(f"{backend}: {written / seconds:,.0f} Observations/s written (asked {rate:,.0f}/s), "
          f"{len(ms):,} of {written:,} notified; commit-to-delivery p50 "
          f"{percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, mean "
          f"{statistics.fmean(ms) if ms else 0:.0f} ms | baseline: {baseline:,.0f} "
          "Observations/s written by the same clients without a subscription", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=500.0, help="Observations per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    for backend in args.backends.split(","):
        measure(backend, args.postgres, args.clients, args.rate, args.seconds)


if __name__ == "__main__":
    main()
