"""Claim adjudication throughput on the Synthea corpus, through ``Claim/$submit`` over HTTP.

    python -m benchmarks.insurance --backends sqlite,postgresql --patients 43

1. The Synthea bundles (``--patients`` patients, re-identified copies beyond the
   corpus) are written as NDJSON with one more file: a Coverage on the demo plan
   DEMO-PPO for each patient (its own subscriber id, in force from birth), loaded
   with ``hygeia load``, and the demo plan installed with ``hygeia insurance demo``.
2. Every Synthea Claim becomes a claim to adjudicate (:func:`adjudicable`): the
   encounter line charges the Synthea claim's total, the procedure, immunization
   and medication lines keep their ``net``, the diagnosis lines become
   ``Claim.diagnosis`` with the Condition's code (so record-aware necessity finds
   them documented) pointed at by the encounter line; the Coverage is the patient's.
3. Baseline, same run: the same Claims created through plain REST (``POST Claim``,
   a record only). Then a fresh database for each path: ``single`` (one
   ``Claim/$submit`` per claim) and ``batch`` (``--batch`` Claims a batch Bundle).
   ``--threads`` clients each own a share of the patients and submit their claims in
   service-date order (the ledger order; families do not span shares).
4. Every ClaimResponse of ``outcome = complete`` and, after the run, every EOB is
   checked to reconcile (:func:`reconcile`); the run fails on the first that does not.

Printed per backend and path: claims/s, p50/p95 per claim (per Bundle for batches),
the server's CPU ms a claim, and the share of claims that auto-adjudicated (paid in
part or in full), pended, were denied in full or could not be processed (error).

``--baseline REV`` serves each path first from that git revision, on a database of
its own, for a same-run A/B; ``--profile DIR`` samples this checkout's server with
py-spy during each path, the plain POST baseline too (collapsed stacks).
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    Server,
    cpu_seconds,
    drop_postgres_db,
    fresh_postgres_db,
    source_at,
    start_py_spy,
    stop_py_spy,
)
from benchmarks.load import write_corpus

BC = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
HEADERS = {"Content-Type": "application/fhir+json"}


def coverage(patient: dict[str, Any]) -> dict[str, Any]:
    """The patient's Coverage on the demo plan, from birth."""
    return {"resourceType": "Coverage", "id": f"cov-{patient['id']}", "status": "active",
            "subscriberId": f"SUB-{patient['id']}",
            "beneficiary": {"reference": f"Patient/{patient['id']}"},
            "subscriber": {"reference": f"Patient/{patient['id']}"},
            "payor": [{"reference": "Organization/demo-payer"}],
            "period": {"start": str(patient.get("birthDate") or "1900-01-01")},
            "class": [{"type": {"coding": [{"system": CLASS, "code": "plan"}]},
                       "value": "DEMO-PPO"}]}


PLAN_START = "2000-01-01"  # the demo plan's period: claims before it have no plan


def adjudicable(claim: dict[str, Any], conditions: dict[str, dict[str, Any]],
                prescriptions: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A Synthea Claim (references already ``Type/id``) as a claim with item-level charges
    on the patient's demo Coverage; None when it has nothing to charge or predates the
    demo plan. A pharmacy claim bills the medication its MedicationRequest names."""
    if claim["billablePeriod"]["start"][:10] < PLAN_START:
        return None
    prescription = prescriptions.get(str((claim.get("prescription") or {}).get("reference")))
    diagnosis = []
    for entry in claim.get("diagnosis") or []:
        condition = conditions.get(str((entry.get("diagnosisReference") or {})
                                       .get("reference")))
        if condition is not None:
            diagnosis.append({"sequence": entry["sequence"], "diagnosisCodeableConcept": {
                "coding": condition["code"]["coding"][:1]}})
    documented = {entry["sequence"] for entry in diagnosis}
    total = Decimal(str((claim.get("total") or {}).get("value") or 0))
    items: list[dict[str, Any]] = []
    pointers: list[int] = []
    for item in claim.get("item") or []:
        if "encounter" not in item and "net" not in item:  # a diagnosis line
            pointers.extend(s for s in item.get("diagnosisSequence") or [] if s in documented)
            continue
        line: dict[str, Any] = {"sequence": len(items) + 1,
                                "productOrService": item["productOrService"],
                                "servicedDate": claim["billablePeriod"]["start"][:10]}
        if prescription is not None:
            line["productOrService"] = prescription.get("medicationCodeableConcept") or \
                line["productOrService"]
            line["encounter"] = item.get("encounter") or []
            line["category"] = {"coding": [{"system": BC, "code": "1"}]}
            net = total
        elif "encounter" in item:
            line["encounter"] = item["encounter"]
            line["category"] = {"coding": [{"system": BC, "code": "3"}]}  # consultation
            net = total if total > 0 else Decimal("50.00")
        else:
            line["category"] = {"coding": [{"system": BC, "code": "1"}]}
            net = Decimal(str(item["net"]["value"]))
        if net <= 0:
            continue
        line["net"] = {"value": float(net), "currency": "USD"}
        items.append(line)
    if not items:
        return None
    if pointers:
        items[0]["diagnosisSequence"] = sorted(set(pointers))
    patient = claim["patient"]["reference"]
    return {"resourceType": "Claim", "status": "active", "use": "claim",
            "type": claim["type"], "patient": {"reference": patient},
            "created": claim["created"], "billablePeriod": claim["billablePeriod"],
            "provider": {"reference": claim["provider"]["reference"]},
            "priority": claim["priority"],
            "insurance": [{"sequence": 1, "focal": True, "coverage": {
                "reference": f"Coverage/cov-{patient.split('/')[1]}"}}],
            **({"diagnosis": diagnosis} if diagnosis else {}),
            "item": items}


def corpus(data: Path, patients: int, directory: Path) -> list[dict[str, Any]]:
    """Write the NDJSON corpus with Coverages into ``directory``; the claims to adjudicate
    in service-date order."""
    write_corpus(data, patients, directory)

    def lines(name: str) -> list[dict[str, Any]]:
        path = directory / f"{name}.ndjson"
        return [orjson.loads(line) for line in path.read_bytes().splitlines()] \
            if path.exists() else []

    with (directory / "Coverage.ndjson").open("wb") as handle:
        for patient in lines("Patient"):
            handle.write(orjson.dumps(coverage(patient)) + b"\n")
    conditions = {f"Condition/{c['id']}": c for c in lines("Condition")}
    prescriptions = {f"MedicationRequest/{m['id']}": m for m in lines("MedicationRequest")}
    claims = [c for c in (adjudicable(claim, conditions, prescriptions)
                          for claim in lines("Claim")) if c]
    claims.sort(key=lambda c: c["billablePeriod"]["start"][:10])
    return claims


def amounts(adjudication: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {a["category"]["coding"][0]["code"]: Decimal(str(a["amount"]["value"]))
            for a in adjudication}


def reconcile(resource: dict[str, Any]) -> None:
    """submitted = eligible + noncovered and eligible = benefit + memberliability, on
    every line and in the totals of a ClaimResponse or EOB (AssertionError if not)."""
    where = f"{resource['resourceType']}/{resource.get('id')}"
    parts = [(f"item {i.get('itemSequence', i.get('sequence'))}", i["adjudication"])
             for i in resource.get("item") or []]
    for label, part in [*parts, ("total", resource.get("total") or [])]:
        got = amounts(part)
        assert got["submitted"] == got["eligible"] + got["noncovered"], (where, label, got)
        assert got["eligible"] == got["benefit"] + got["memberliability"], (where, label, got)
    lines = [amounts(part) for _, part in parts]
    totals = amounts(resource.get("total") or [])
    for code in ("submitted", "eligible", "noncovered", "benefit", "memberliability"):
        assert totals[code] == sum((line[code] for line in lines), Decimal(0)), \
            (where, code, totals)


REASONS: Counter[str] = Counter()  # why claims pended or errored (--why)


def kind(response: dict[str, Any]) -> str:
    """auto (adjudicated, something paid), denied (every line noncovered), pended, error."""
    if response.get("resourceType") != "ClaimResponse":
        return "refused"
    if response["outcome"] == "queued":
        REASONS["pended: " + re.sub(r"[0-9a-f-]{36}|\d{4}-\d\d-\d\d|\d+", "#",
                                    response.get("disposition", ""))[:160]] += 1
        return "pended"
    if response["outcome"] != "complete":
        REASONS["error: " + re.sub(r"\d+", "#", response.get("disposition", ""))[:160]] += 1
        return "error"
    reconcile(response)
    return "auto" if amounts(response["total"])["eligible"] > 0 else "denied"


class Client:
    """One keep-alive connection (http.client: httpx costs the 2-core machine ~1 ms a call)."""

    def __init__(self, base: str) -> None:
        host, port = base.split("//")[1].split("/")[0].split(":")
        self.prefix = "/" + base.split("//")[1].split("/", 1)[1]
        self.connection = http.client.HTTPConnection(host, int(port), timeout=600)

    def post(self, path: str, body: Any, expect: int = 200) -> tuple[Any, float]:
        started = time.perf_counter()
        self.connection.request("POST", f"{self.prefix}/{path}", body=orjson.dumps(body),
                                headers=HEADERS)
        response = self.connection.getresponse()
        content = response.read()
        elapsed = time.perf_counter() - started
        if response.status != expect:
            raise RuntimeError(f"POST {path}: {response.status} {content[:400]!r}")
        return orjson.loads(content), elapsed


def shares(claims: list[dict[str, Any]], threads: int) -> list[list[dict[str, Any]]]:
    """The claims split by patient over ``threads`` clients, each share in date order."""
    patients = sorted({c["patient"]["reference"] for c in claims})
    owner = {patient: index % threads for index, patient in enumerate(patients)}
    out: list[list[dict[str, Any]]] = [[] for _ in range(threads)]
    for claim in claims:
        out[owner[claim["patient"]["reference"]]].append(claim)
    return out


def drive(base: str, claims: list[dict[str, Any]], threads: int, mode: str, batch: int
          ) -> tuple[float, list[float], Counter[str]]:
    """Send every claim (``mode``: plain create, single $submit or batch); (seconds,
    latencies, kinds)."""
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work(share: list[dict[str, Any]]) -> None:
        client = Client(base)
        mine: list[float] = []
        found: Counter[str] = Counter()
        try:
            if mode == "create":
                for claim in share:
                    mine.append(client.post("Claim", claim, expect=201)[1])
            elif mode == "single":
                for claim in share:
                    response, elapsed = client.post("Claim/$submit", claim)
                    mine.append(elapsed)
                    found[kind(response)] += 1
            else:
                for start in range(0, len(share), batch):
                    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
                        {"resource": claim} for claim in share[start:start + batch]]}
                    response, elapsed = client.post("Claim/$submit", bundle)
                    mine.append(elapsed)
                    for entry in response["entry"]:
                        found[kind(entry["resource"])] += 1
        except BaseException as error:  # reported by the main thread
            failures.append(error)
        with lock:
            latencies.extend(mine)
            kinds.update(found)

    workers = [threading.Thread(target=work, args=(share,))
               for share in shares(claims, threads) if share]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed, latencies, kinds


def check_eobs(base: str) -> int:
    """Reconcile every stored EOB; how many."""
    client = Client(base)
    checked = 0
    path = "ExplanationOfBenefit?_count=500&status=active"
    while path:
        client.connection.request("GET", f"{client.prefix}/{path}")
        bundle = orjson.loads(client.connection.getresponse().read())
        for entry in bundle.get("entry") or []:
            if "claimResponse" in entry["resource"]:  # not Synthea's own EOBs
                reconcile(entry["resource"])
                checked += 1
        after = next((link["url"] for link in bundle.get("link") or []
                      if link["relation"] == "next"), None)
        path = after.split("/fhir/", 1)[1] if after else ""
    return checked


def prepared_db(backend: str, admin: str, folder: Path, name: str, corpus_dir: Path) -> str:
    """A fresh database (a PostgreSQL one named ``name``) with the corpus and demo plan."""
    url = f"sqlite:///{folder}/{name}.db" if backend == "sqlite" else \
        fresh_postgres_db(admin, name)
    files = sorted(str(path) for path in corpus_dir.glob("*.ndjson"))
    for command in (["load", "--db", url, "--quiet", *files],
                    ["insurance", "demo", "--db", url]):
        subprocess.run([sys.executable, "-m", "hygeia.cli.main", *command], check=True,
                       capture_output=True)
    return url


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def report(backend: str, label: str, count: int, seconds: float, latencies: list[float],
           kinds: Counter[str], unit: str = "claim") -> None:
    share = "  ".join(f"{name} {kinds[name] / max(1, sum(kinds.values())):6.1%}"
                      for name in ("auto", "denied", "pended", "error", "refused")
                      if kinds[name] or name in ("auto", "denied", "pended"))
    print(f"{backend:<10} {label:<24} {count / seconds:8,.0f} claims/s  p50 "
          f"{statistics.median(latencies) * 1000:7.1f} ms  p95 "
          f"{percentile(latencies, 0.95) * 1000:7.1f} ms per {unit}"
          + (f"  | {share}" if kinds else ""), flush=True)


def _profiler(server: Server, folder: Path | None, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the server (and its workers) into ``folder/name.txt``, only what
    holds the GIL (where the CPU goes), when ``--profile`` asks for it."""
    if folder is None:
        return None
    return start_py_spy(server.process.pid, folder / f"{name}.txt", 200, "--gil")


def run(backend: str, admin: str, data: Path, patients: int, threads: int, batch: int,
        paths: list[str], server_threads: int | None, profile: Path | None = None,
        baseline: str | None = None, workers: int | None = None,
        db_prefix: str = "bench_insurance_") -> None:
    """Each path on a fresh database, served by this checkout (and first by ``baseline``,
    a git revision, for a same-run A/B)."""
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        corpus_dir = folder / "corpus"
        corpus_dir.mkdir()
        claims = corpus(data, patients, corpus_dir)
        lines = sum(len(c["item"]) for c in claims)
        print(f"{backend:<10} corpus: {patients} patients, {len(claims)} claims, {lines} lines",
              flush=True)
        extra = ["--threads", str(server_threads)] if server_threads else []
        extra += ["--workers", str(workers)] if workers else []
        sources: list[tuple[str, Path | None]] = [("", None)]
        if baseline is not None:
            (folder / "baseline").mkdir()
            sources.insert(0, (f"[{baseline[:10]}] ",
                               source_at(baseline, folder / "baseline")))
        for path in paths:
            for index, (tag, source) in enumerate(sources):
                name = f"{db_prefix}{path}"
                url = prepared_db(backend, admin, folder, name + str(index), corpus_dir)
                server = Server(url, *extra, source=source)
                try:
                    _measure(server, backend, tag, claims, threads, path, batch,
                             profile if source is None else None)
                finally:
                    server.stop()
                    if backend != "sqlite":
                        drop_postgres_db(admin, name + str(index))


def _measure(server: Server, backend: str, tag: str, claims: list[dict[str, Any]],
             threads: int, path: str, batch: int, profile: Path | None) -> None:
    if path == "single":
        spy = _profiler(server, profile, f"{backend}-post")
        before = cpu_seconds(server.process.pid)
        seconds, latencies, _ = drive(server.base, claims, threads, "create", 0)
        cpu = cpu_seconds(server.process.pid) - before
        stop_py_spy(spy)
        report(backend, tag + "POST Claim (baseline)", len(claims), seconds, latencies,
               Counter())
        print(f"{backend:<10} {tag}POST Claim: server CPU {cpu * 1000 / len(claims):.2f} ms "
              "a claim", flush=True)
    spy = _profiler(server, profile, f"{backend}-{path}")
    before = cpu_seconds(server.process.pid)
    seconds, latencies, kinds = drive(server.base, claims, threads, path, batch)
    cpu = cpu_seconds(server.process.pid) - before
    stop_py_spy(spy)
    label = tag + ("Claim/$submit single" if path == "single" else
                   f"Claim/$submit batch {batch}")
    report(backend, label, len(claims), seconds, latencies, kinds,
           "claim" if path == "single" else "Bundle")
    print(f"{backend:<10} {tag}{path}: server CPU {cpu * 1000 / len(claims):.2f} ms a claim",
          flush=True)
    assert sum(kinds.values()) == len(claims), kinds
    print(f"{backend:<10} {tag}{path}: every ClaimResponse reconciles; "
          f"{check_eobs(server.base)} EOBs reconcile", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder of Synthea bundles (default ../shared/data/synthea-r4)")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated (default sqlite,postgresql)")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--patients", type=int, default=43,
                        help="patients (default 43, the corpus; more are re-identified copies)")
    parser.add_argument("--threads", type=int, default=2, help="clients (default 2)")
    parser.add_argument("--batch", type=int, default=200, help="Claims a batch (default 200)")
    parser.add_argument("--paths", default="single,batch",
                        help="single, batch or both (default single,batch)")
    parser.add_argument("--why", action="store_true",
                        help="print why claims pended or could not be processed")
    parser.add_argument("--server-workers", type=int, default=None,
                        help="the server's --workers, serving processes (default: the "
                             "server's own default, 1)")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="the server's --threads (default: the server's own default)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="sample the server with py-spy during each path into "
                             "DIR/BACKEND-PATH.txt (the POST baseline into DIR/BACKEND-post.txt), "
                             "collapsed stacks (default: no profile)")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also serve each path from this git revision first, on its own "
                             "fresh database: a same-run A/B (default: this checkout only)")
    parser.add_argument("--db-prefix", default="bench_insurance_",
                        help="name prefix of the scratch PostgreSQL databases, so runs "
                             "beside each other do not share one (default bench_insurance_)")
    args = parser.parse_args(argv)
    for backend in args.backends.split(","):
        run(backend, args.postgres, args.data, args.patients, args.threads, args.batch,
            args.paths.split(","), args.server_threads, args.profile, args.baseline,
            args.server_workers, args.db_prefix)
    if args.why:
        for reason, count in REASONS.most_common(20):
            print(f"{count:6} {reason}")


if __name__ == "__main__":
    main()
