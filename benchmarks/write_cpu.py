"""CPU per resource of the core's transactional write path, beside another revision
measured in the same run.

Two parts, each run for ``--against REV`` (default ``main``) and for this checkout,
taking turns ``--rounds`` times; the medians and their ratio (current / baseline:
below 1 is cheaper) are printed.

``micro`` (in-process, one child process per revision and round): microseconds of CPU
per Synthea Observation for the pure steps (validation, index extraction, the index
rows turned into the side tables' rows, stamping), per resource for validating what
an HL7 v2 monitor message becomes (Binary, MessageHeader, six Observations), and for
whole writes through ``FhirService`` on a SQLite file: single creates and transaction
Bundles of 8 (these include SQLite and its commits, without HTTP).

``server`` (``hygeia serve`` processes, one per revision): server CPU milliseconds per
Observation (its process tree, from /proc) for single ``POST /fhir/Observation`` and
for transaction Bundles of 8, from ``--clients`` clients, on each of ``--backends``.

    python -m benchmarks.write_cpu [--parts micro,server] [--against main] [--rounds 3]
        [--backends sqlite,postgresql] [--creates 800] [--clients 4] [--db-prefix P]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    Server,
    bundle_files,
    cpu_seconds,
    drop_postgres_db,
    fresh_postgres_db,
    source_at,
)

ROOT = Path(__file__).resolve().parent.parent
HEADERS = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
BUNDLE = 8


def observations(data: Path, files: int = 3) -> list[dict[str, Any]]:
    """The Observations of the first ``files`` Synthea Bundles, without their ids."""
    found = []
    for path in bundle_files(data)[:files]:
        raw = path.read_bytes()
        bundle = orjson.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "Observation":
                found.append({key: value for key, value in resource.items() if key != "id"})
    if not found:
        sys.exit(f"no Observations in {data}")
    return found


def transaction(resources: list[dict[str, Any]], start: int) -> dict[str, Any]:
    """A transaction Bundle creating ``BUNDLE`` of ``resources`` from ``start`` on."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{start + k:012d}",
         "resource": resources[(start + k) % len(resources)],
         "request": {"method": "POST", "url": "Observation"}} for k in range(BUNDLE)]}


def device_message(number: int) -> list[dict[str, Any]]:
    """The resources an HL7 v2 monitor message becomes (the shape ``devices`` writes):
    its raw text as a Binary, a MessageHeader naming what it touched, and six
    Observations with new identifiers and times but the same patient and devices."""
    at = f"2026-01-01T00:{number // 60 % 60:02d}:{number % 60:02d}+00:00"
    patient, devices = "Patient/pat-1913b17ce34b", [f"Device/dev-{k}6784d02fa5f" for k in range(6)]
    raw = ("MSH|^~\\&|MONITOR|WARD|HYGEIA|HOSP|" + "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|" * 30)
    observations = [{
        "resourceType": "Observation", "status": "preliminary",
        "identifier": [{"system": "urn:hygeia:hl7v2:obx", "value": f"MONITOR^{number}^{k}^{at}"}],
        "code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "147842",
                             "display": "MDC_ECG_HEART_RATE"},
                            {"system": "http://loinc.org", "code": "8867-4",
                             "display": "Heart rate"}], "text": "MDC_ECG_HEART_RATE"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "observation-category", "code": "vital-signs"}]}],
        "subject": {"reference": patient}, "effectiveDateTime": at,
        "valueQuantity": {"value": 72 + k, "unit": "/min", "system": "http://unitsofmeasure.org",
                          "code": "/min"},
        "device": {"reference": devices[k]}} for k in range(6)]
    header = {"resourceType": "MessageHeader",
              "eventCoding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0003",
                              "code": "R01"},
              "source": {"name": "MONITOR", "endpoint": "mllp://127.0.0.1:38464"},
              "response": {"identifier": f"B1-{number}", "code": "ok"},
              "focus": [{"reference": f"Binary/m{number}"}, {"reference": patient},
                        *({"reference": device} for device in devices)]}
    binary = {"resourceType": "Binary", "contentType": "x-application/hl7-v2+er7",
              "data": base64.b64encode(f"{raw}{number}".encode()).decode()}
    return [binary, header, *observations]


# --------------------------------------------------------------------------- micro


def micro(data: Path, writes: int) -> dict[str, float]:
    """Run in a child process on one revision: CPU microseconds per Observation."""
    from hygeia.fhir.resources import stamp
    from hygeia.fhir.search.index import index_resource
    from hygeia.fhir.search.parameters import default_registry
    from hygeia.fhir.validation import validate
    from hygeia.server import FhirService
    from hygeia.server.context import FhirRequest
    from hygeia.store import StoredVersion, open_repository
    from hygeia.store.sql import INDEX_FIELDS, _table_rows

    resources = observations(data)
    registry = default_registry()
    indexed = [(1, StoredVersion("Observation", "x", 1, 1, False, None, "POST", 0),
                index_resource(resource, registry)) for resource in resources]

    def per_item(step: Any, items: list[Any], repeat: int = 20) -> float:
        for item in items[:50]:
            step(item)
        best = float("inf")
        for _ in range(3):  # the least disturbed of three passes
            started = time.process_time()
            for _ in range(repeat):
                for item in items:
                    step(item)
            best = min(best, time.process_time() - started)
        return best * 1e6 / (repeat * len(items))

    def table_rows(row: Any) -> None:
        for table, field_name in INDEX_FIELDS:
            _table_rows(table, field_name, [row])

    messages = [resource for number in range(60) for resource in device_message(number)]
    result = {
        "validate": per_item(lambda r: validate(r, "Observation"), resources),
        "validate (device message)": per_item(lambda r: validate(r, r["resourceType"]),
                                              messages),
        "index rows": per_item(lambda r: index_resource(r, registry), resources),
        "side-table rows": per_item(table_rows, indexed),
        "stamp": per_item(lambda r: stamp(dict(r), "x", 1, 1_700_000_000_000_000), resources),
    }
    with tempfile.TemporaryDirectory() as tmp:
        service = FhirService(open_repository(f"sqlite:///{tmp}/micro.db"))
        base = "http://bench/fhir/"

        def create(number: int) -> None:
            body = orjson.loads(orjson.dumps(resources[number % len(resources)]))
            response = service.handle(FhirRequest("POST", "Observation", [], body, base))
            assert response.status == 201, response.status

        def bundle(number: int) -> None:
            body = orjson.loads(orjson.dumps(transaction(resources, number * BUNDLE)))
            response = service.handle(FhirRequest("POST", "", [], body, base))
            assert response.status == 200, response.status

        for name, step, per in (("create (SQLite)", create, 1),
                                (f"Bundle of {BUNDLE} (SQLite)", bundle, BUNDLE)):
            for number in range(20):
                step(number)
            started = time.process_time()
            for number in range(writes // per):
                step(number)
            result[name] = (time.process_time() - started) * 1e6 / (writes // per * per)
        service.repository.close()
    return result


def run_micro(source: Path, data: Path, writes: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{source}{os.pathsep}{ROOT}")
    out = subprocess.run([sys.executable, "-m", "benchmarks.write_cpu", "--inner-micro",
                          "--data", str(data), "--writes", str(writes)],
                         env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- server


def post_all(server: Server, bodies: list[tuple[str, bytes]], clients: int,
             per_body: int) -> float:
    """Server CPU ms per resource for POSTing every body, from ``clients`` clients."""
    port = server.port

    def client(mine: list[tuple[str, bytes]]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for path, body in mine:
            connection.request("POST", path, body, HEADERS)
            response = connection.getresponse()
            response.read()
            if response.status not in (200, 201):
                raise RuntimeError(f"POST {path} answered {response.status}")
        connection.close()

    threads = [threading.Thread(target=client, args=(bodies[k::clients],))
               for k in range(clients)]
    cpu = cpu_seconds(server.process.pid)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (cpu_seconds(server.process.pid) - cpu) * 1000 / (len(bodies) * per_body)


def server_bodies(resources: list[dict[str, Any]], creates: int
                  ) -> dict[str, tuple[list[tuple[str, bytes]], int]]:
    singles = [("/fhir/Observation", orjson.dumps(resources[k % len(resources)]))
               for k in range(creates)]
    bundles = [("/fhir", orjson.dumps(transaction(resources, k * BUNDLE)))
               for k in range(creates // BUNDLE)]
    return {"create": (singles, 1), f"Bundle of {BUNDLE}": (bundles, BUNDLE)}


def run_servers(args: argparse.Namespace, sources: dict[str, Path | None],
                results: dict[tuple[str, str], list[float]]) -> None:
    bodies = server_bodies(observations(args.data), args.creates)
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            servers: dict[str, Server] = {}
            names = []
            try:
                for number, (label, source) in enumerate(sources.items()):
                    if backend == "postgresql":
                        name = f"{args.db_prefix}_{number}"
                        names.append(name)
                        url = fresh_postgres_db(args.postgres, name)
                    else:
                        url = f"sqlite:///{tmp}/{number}.db"
                    servers[label] = Server(url, source=source, cwd=Path(tmp))
                for server in servers.values():  # warm up
                    post_all(server, bodies["create"][0][:40], 1, 1)
                for round_number in range(args.rounds):
                    order = list(servers.items())
                    if round_number % 2:
                        order.reverse()
                    for kind, (items, per) in bodies.items():
                        for label, server in order:
                            results.setdefault((f"server {backend}: {kind}", label), []).append(
                                post_all(server, items, args.clients, per))
                    print(f"  {backend} round {round_number + 1} done", file=sys.stderr)
            finally:
                for server in servers.values():
                    server.stop()
                for name in names:
                    drop_postgres_db(args.postgres, name)


# --------------------------------------------------------------------------- report


def report(results: dict[tuple[str, str], list[float]], labels: list[str], rounds: int) -> None:
    baseline, current = labels
    print(f"\n{'step':38} {baseline:>10} {current:>10} {'ratio':>6}   "
          f"(medians of {rounds} rounds, then each side's lowest-highest; micro: CPU us "
          "per Observation, server: server CPU ms per Observation)")
    steps = dict.fromkeys(step for step, _ in results)
    for step in steps:
        olds, news = results[(step, baseline)], results[(step, current)]
        old, new = statistics.median(olds), statistics.median(news)
        print(f"{step:38} {old:>10.3f} {new:>10.3f} {new / old:>6.2f}   "
              f"{min(olds):.3f}-{max(olds):.3f} | {min(news):.3f}-{max(news):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="micro,server")
    parser.add_argument("--against", default="main", metavar="REV")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--writes", type=int, default=2000,
                        help="in-process writes per step and round")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--db-prefix", default="bench_write_cpu")
    parser.add_argument("--creates", type=int, default=800,
                        help="Observations per server step and round")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--inner-micro", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner_micro:
        print(json.dumps(micro(args.data, args.writes)))
        return
    parts = set(args.parts.split(","))
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources: dict[str, Path | None] = {args.against: source_at(args.against, Path(tmp)),
                                           "current": None}
        labels = list(sources)
        if "micro" in parts:
            for round_number in range(args.rounds):
                order = labels if round_number % 2 == 0 else labels[::-1]
                for label in order:
                    source = sources[label] or ROOT / "src"
                    for step, value in run_micro(source, args.data, args.writes).items():
                        results.setdefault((f"micro: {step}", label), []).append(value)
                print(f"  micro round {round_number + 1} done", file=sys.stderr)
        if "server" in parts:
            run_servers(args, sources, results)
    report(results, labels, args.rounds)


if __name__ == "__main__":
    main()
