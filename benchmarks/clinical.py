"""Clinical services: the NEWS2 engine keeping up with a stream of vital signs, and CDS
Hooks calls, against a real ``hygeia serve``.

    python -m benchmarks.clinical --backends sqlite,postgresql --patients 1000

1. ``--patients`` Patients are created; then ``--threads`` clients POST transaction
   Bundles of ``--bundle`` observation sets each (a set: respiratory rate, SpO2,
   blood pressure panel, heart rate, temperature, ACVPU: 6 vital signs), ``--sets``
   sets per patient. The ingest rate (vital signs committed per second) is the
   baseline the engine is measured beside, in the same run.
2. The engine scores each set from the change feed: scores per second (from the
   first set's commit to the last score) and the lag from a set's commit to its
   score (``meta.lastUpdated`` of the score minus that of its newest vital sign),
   p50 and p99.
3. CDS Hooks: ``news2`` and ``care-gaps`` (patient-view) without and with
   prefetch, and ``drug-allergy`` (order-select, a draft amoxicillin order for a
   patient allergic to penicillin): latency p50 and p95 over ``--calls`` calls each.
4. The engine while a faster source ingests: the same vital signs loaded with ``hygeia
   load`` into the running server's database (the load rate is the baseline), scores
   per second, and the lag from each vital's commit to its score's commit (both seen by
   a reader of the change feed polling every 20 ms, :class:`FeedWatcher`), p50/p99; and
   the lag from the vitals' ``lastUpdated`` as in 2, which adds the loader's own delay
   (a line is stamped when prepared; a batch of 4,000 commits at once).
5. The engine's capacity: the same vital signs loaded with ``hygeia load`` while the
   server is down, then drained by the restarted server's engine (vital signs/s,
   beside the load rate of the same run), and per second of the server's CPU time
   (a figure that depends less on what else the machine runs).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
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
    postgres_cpu_seconds,
    start_py_spy,
    stop_py_spy,
)
from hygeia.store import open_repository

FHIR = {"Content-Type": "application/fhir+json"}
NEWS2 = "http://snomed.info/sct|1104051000000101"
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PARTS = frozenset({"stream", "backlog", "live"})


def vital(patient: str, code: str, at: str, value: float | None = None, unit: str = "",
          answer: str | None = None) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": at}
    if answer is not None:
        observation["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct",
                                                           "code": answer}]}
    elif code == "85354-9":
        observation["component"] = [{
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]",
                              "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]
    else:
        observation["valueQuantity"] = {"value": value, "unit": unit,
                                        "system": "http://unitsofmeasure.org", "code": unit}
    return observation


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource,
         "request": {"method": "POST", "url": "Observation"}} for resource in resources]}


def set_resources(patient: str, at: str, rng: random.Random) -> list[dict[str, Any]]:
    """The 6 vital signs of one set (values drawn at random, often abnormal)."""
    return [
        vital(patient, "9279-1", at, rng.choice([12, 16, 22, 26]), "/min"),
        vital(patient, "59408-5", at, rng.choice([91, 94, 97]), "%"),
        vital(patient, "85354-9", at, rng.choice([95, 110, 124])),
        vital(patient, "8867-4", at, rng.choice([48, 72, 95, 118]), "/min"),
        vital(patient, "8310-5", at, rng.choice([35.5, 36.8, 38.4]), "Cel"),
        vital(patient, "67775-7", at, answer="248234008"),  # alert (SNOMED CT)
    ]


def create_patients(client: httpx.Client, count: int) -> list[str]:
    ids = [f"bench-{number}" for number in range(count)]
    for start in range(0, count, 200):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": id, "birthDate": "1950-01-01"},
             "request": {"method": "PUT", "url": f"Patient/{id}"}}
            for id in ids[start:start + 200]]}
        client.post("", json=bundle, headers=FHIR).raise_for_status()
    return ids


def stream_vitals(base: str, patients: list[str], sets: int, threads: int,
                  bundle: int = 1) -> float:
    """POST every set from ``threads`` clients, ``bundle`` sets per transaction; wall
    seconds."""
    work = [(patient, (START + timedelta(hours=4 * number)).isoformat())
            for number in range(sets) for patient in patients]
    lock = threading.Lock()

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base + "/", timeout=60) as client:
            while True:
                with lock:
                    if not work:
                        return
                    taken = [work.pop() for _ in range(min(bundle, len(work)))]
                resources = [resource for patient, at in taken
                             for resource in set_resources(patient, at, rng)]
                client.post("", json=transaction(resources), headers=FHIR).raise_for_status()

    began = time.perf_counter()
    workers = [threading.Thread(target=client_loop, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - began


def all_pages(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = query
    while url:
        bundle = client.get(url).json()
        found.extend(entry["resource"] for entry in bundle.get("entry", []))
        url = next((link["url"] for link in bundle.get("link", [])
                    if link["relation"] == "next"), None)
    return found


def wait_for_scores(client: httpx.Client, expected: int, timeout: float) -> float:
    """Seconds until ``expected`` scores exist (from now)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        total = client.get(f"Observation?code={NEWS2}&_summary=count").json()["total"]
        if total >= expected:
            return time.perf_counter() - began
        time.sleep(0.2)
    raise SystemExit(f"the engine scored fewer than {expected} sets in {timeout:.0f} s")


def instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def score_lags(client: httpx.Client) -> tuple[list[float], float, float]:
    """Per score: seconds from its newest vital sign's commit to the score; and the
    first vital's and the last score's commit times."""
    vitals = {f"Observation/{o['id']}": instant(o["meta"]["lastUpdated"])
              for o in all_pages(client, "Observation?category=vital-signs&_count=1000")}
    scores = all_pages(client, f"Observation?code={NEWS2}&_count=1000")
    lags = []
    for score in scores:
        used = [vitals[d["reference"]] for d in score.get("derivedFrom", [])
                if d["reference"] in vitals]
        if used:
            lags.append(instant(score["meta"]["lastUpdated"]) - max(used))
    last_score = max(instant(score["meta"]["lastUpdated"]) for score in scores)
    return lags, min(vitals.values()), last_score


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def hook_call(service: str, hook: str, patient: str, prefetch: dict[str, Any] | None = None,
              context: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": {
        "userId": "Practitioner/bench", "patientId": patient, **(context or {})}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def prefetched(client: httpx.Client, templates: dict[str, str], patient: str
               ) -> dict[str, Any]:
    """The service's prefetch, filled for ``patient`` the way an EHR would."""
    found = {}
    for key, template in templates.items():
        query = template.replace("{{context.patientId}}", patient)
        found[key] = client.get(query).json()
    return found


def time_calls(root: str, service: str, bodies: list[dict[str, Any]]) -> list[float]:
    latencies = []
    with httpx.Client(timeout=60) as client:
        for body in bodies:
            began = time.perf_counter()
            answer = client.post(f"{root}/cds-services/{service}", json=body)
            latencies.append(time.perf_counter() - began)
            answer.raise_for_status()
    return latencies


def measure_hooks(server: Server, patients: list[str], calls: int) -> list[str]:
    root = server.base.removesuffix("/fhir")
    client = httpx.Client(base_url=server.base + "/", timeout=60)
    services = {s["id"]: s for s in httpx.get(f"{root}/cds-services").json()["services"]}
    rng = random.Random(7)
    chosen = [rng.choice(patients) for _ in range(calls)]
    lines = []
    for name in ("news2", "care-gaps"):
        service = services[name]
        plain = [hook_call(name, service["hook"], patient) for patient in chosen]
        with_prefetch = [hook_call(name, service["hook"], patient,
                                   prefetched(client, service.get("prefetch", {}), patient))
                         for patient in chosen]
        for label, bodies in (("no prefetch", plain), ("prefetch", with_prefetch)):
            latencies = time_calls(root, name, bodies)
            lines.append(f"{name:<13} {label:<12} p50 {percentile(latencies, 0.5) * 1000:6.1f} "
                         f"ms, p95 {percentile(latencies, 0.95) * 1000:6.1f} ms")
    allergic = chosen[: max(1, calls // 4)]
    for patient in allergic:
        client.post("AllergyIntolerance", headers=FHIR, json={
            "resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{patient}"},
            "criticality": "high", "code": {"coding": [{"system": "http://snomed.info/sct",
                                                        "code": "91936005"}]}})
    order = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft",
             "intent": "order", "medicationCodeableConcept": {"coding": [{
                 "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "562251"}]}}
    service = services["drug-allergy"]
    bodies = [hook_call("drug-allergy", service["hook"], patient, context={
        "selections": ["MedicationRequest/draft-1"], "draftOrders": {
            "resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
                **order, "subject": {"reference": f"Patient/{patient}"}}}]}})
        for patient in chosen]
    latencies = time_calls(root, "drug-allergy", bodies)
    lines.append(f"drug-allergy  {service['hook']:<12} p50 "
                 f"{percentile(latencies, 0.5) * 1000:6.1f} ms, p95 "
                 f"{percentile(latencies, 0.95) * 1000:6.1f} ms")
    client.close()
    return lines


def write_vitals(path: Path, patients: list[str], sets: int) -> Path:
    """``sets`` observation sets per patient as NDJSON for ``hygeia load``."""
    rng = random.Random(3)
    with path.open("wb") as handle:
        for number in range(sets):
            at = (START + timedelta(hours=4 * number)).isoformat()
            for patient in patients:
                for resource in set_resources(patient, at, rng):
                    handle.write(orjson.dumps({**resource, "id": str(uuid.uuid4())}) + b"\n")
    return path


class FeedWatcher:
    """Sees when each Observation version commits: reads the change feed (the store's
    public ``Repository.changes``) every ``interval`` seconds in this process, so the
    times are the commits' (to within ``interval``), not the versions' ``lastUpdated``
    (a loaded vital is stamped when its line is prepared, up to a whole 4,000-resource
    batch before it commits). It costs the server nothing but a feed read per poll."""

    def __init__(self, db_url: str, interval: float = 0.02) -> None:
        self.repository = open_repository(db_url)
        self.interval = interval
        self.position = self.repository.feed_horizon()
        self.seen: dict[str, float] = {}  # Observation id -> when its newest version showed
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.poll()
            self.stopping.wait(self.interval)

    def poll(self) -> None:
        while True:
            batch = self.repository.changes(self.position, 10_000, ("Observation",))
            now = time.time()
            for event in batch.events:
                self.seen[event.id] = now
            self.position = batch.position
            if len(batch.events) < 10_000:
                return

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.poll()  # whatever committed since the last look
        self.repository.close()

    def lags(self, client: httpx.Client) -> list[float]:
        """Per score: seconds from its newest vital sign's commit to its own (newest
        version's) commit."""
        lags = []
        for score in all_pages(client, f"Observation?code={NEWS2}&_count=1000"):
            used = [self.seen[ref] for d in score.get("derivedFrom", [])
                    if (ref := d["reference"].removeprefix("Observation/")) in self.seen]
            if used and score["id"] in self.seen:
                lags.append(self.seen[score["id"]] - max(used))
        return lags


def measure_live_load(db_url: str, patients: int, sets: int, source: Path | None = None
                      ) -> tuple[float, float, list[float], list[float]]:
    """The engine while a bulk load streams vital signs into the running server's
    database (``hygeia load``, faster than HTTP clients on this machine). Returns (load
    rate, engine rate from the first vital's commit to the last score, vital signs/s;
    each score's lag from its vitals' commit, s (:class:`FeedWatcher`); each score's lag
    from its vitals' ``lastUpdated``, s, which adds the loader's own commit delay).
    ``source``: another checkout's ``src`` to serve (a same-run baseline engine)."""
    server = Server(db_url, source=source)
    try:
        with httpx.Client(base_url=server.base + "/", timeout=120) as client:
            ids = create_patients(client, patients)
            with tempfile.TemporaryDirectory() as folder:
                path = write_vitals(Path(folder) / "vitals.ndjson", ids, sets)
                watcher = FeedWatcher(db_url)
                try:
                    began = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--db",
                                    db_url, "--quiet", str(path)], check=True,
                                   capture_output=True)
                    loaded = time.perf_counter() - began
                    wait_for_scores(client, patients * sets, timeout=900)
                finally:
                    watcher.stop()
            commit_lags = watcher.lags(client)
            lags, first_vital, last_score = score_lags(client)
    finally:
        server.stop()
    vitals = patients * sets * 6
    return vitals / loaded, vitals / (last_score - first_vital), commit_lags, lags


def measure_backlog(db_url: str, patients: int, sets: int, source: Path | None = None
                    ) -> tuple[float, float, float]:
    """The engine's capacity: vital signs loaded with ``hygeia load`` while the server is
    down (its cursor already exists), then the seconds the restarted server's engine
    takes to score them all. Returns (load rate, engine rate, engine rate per CPU
    second of the server), vital signs/s."""
    server = Server(db_url, source=source)  # creates the engine's cursor, at the feed's end
    with httpx.Client(base_url=server.base + "/", timeout=120) as client:
        ids = create_patients(client, patients)
    server.stop()
    with tempfile.TemporaryDirectory() as folder:
        path = write_vitals(Path(folder) / "vitals.ndjson", ids, sets)
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--db", db_url,
                        "--quiet", str(path)], check=True, capture_output=True)
        loaded = time.perf_counter() - began
    vitals = patients * sets * 6
    server = Server(db_url, source=source)
    try:
        began = cpu_seconds(server.process.pid)
        with httpx.Client(base_url=server.base + "/", timeout=120) as client:
            drained = wait_for_scores(client, patients * sets, timeout=900)
        cpu = cpu_seconds(server.process.pid) - began
    finally:
        server.stop()
    return vitals / loaded, vitals / drained, vitals / cpu


def run(backend: str, admin: str, patients: int, sets: int, threads: int, calls: int,
        bundle: int = 1, parts: frozenset[str] = PARTS, prefix: str = "bench_clinical",
        baseline: Path | None = None, rounds: int = 1, profile: Path | None = None) -> None:
    """Measure ``parts`` (stream: HTTP ingest and hooks, backlog, live) on ``backend``;
    each also with ``baseline`` (another checkout's ``src``) first. The stream is
    measured ``rounds`` times, which engine goes first alternating (a same-run A/B on a
    machine whose load changes); ``profile``: py-spy samples this checkout's server."""
    with tempfile.TemporaryDirectory() as folder:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"  # runs side by side never clash
        sources = [None] if baseline is None else [baseline, None]
        if "stream" in parts:
            for round_ in range(rounds):
                for source in sources if round_ % 2 == 0 else sources[::-1]:
                    _stream_part(backend, admin, folder,
                                 name + ("_base" if source else "") + f"_{round_}",
                                 patients, sets, threads, calls, bundle, source,
                                 None if source else profile)
        if "backlog" in parts:
            for source in sources:
                _backlog_part(backend, admin, folder, name + ("_base" if source else ""),
                              patients, sets, source)
        if "live" in parts:
            for source in sources:
                _live_part(backend, admin, folder, name + ("_base" if source else ""),
                           patients, sets, source)


def _engine(source: Path | None) -> str:
    return "this checkout" if source is None else f"baseline {source}"


def _url(backend: str, admin: str, folder: str, name: str) -> str:
    return f"sqlite:///{Path(folder)}/{name}.db" if backend == "sqlite" else \
        fresh_postgres_db(admin, name)


def _drop(backend: str, admin: str, name: str) -> None:
    if backend != "sqlite":
        drop_postgres_db(admin, name)


def _stream_part(backend: str, admin: str, folder: str, name: str, patients: int,
                 sets: int, threads: int, calls: int, bundle: int,
                 source: Path | None = None, profile: Path | None = None) -> None:
    """HTTP clients stream the vitals (the baseline); the engine keeps up; hook calls.
    The server's CPU (and its PostgreSQL backends') from the first vital to the last
    score, per vital sign: less noisy than the rates on a shared machine."""
    server = Server(_url(backend, admin, folder, name), source=source)
    try:
        client = httpx.Client(base_url=server.base + "/", timeout=120)
        ids = create_patients(client, patients)
        spy = _profiler(server, profile, f"{backend}-stream-{name[-12:]}")
        cpu = cpu_seconds(server.process.pid)
        pg_cpu = postgres_cpu_seconds(name) if backend != "sqlite" else 0.0
        pool = PoolSampler(server.base)
        elapsed = stream_vitals(server.base, ids, sets, threads, bundle)
        vitals = patients * sets * 6
        wait_for_scores(client, patients * sets, timeout=600)
        pool.stop()
        cpu = cpu_seconds(server.process.pid) - cpu
        pg_cpu = (postgres_cpu_seconds(name) - pg_cpu) if backend != "sqlite" else 0.0
        stop_py_spy(spy)
        lags, first_vital, last_score = score_lags(client)
        hooks = measure_hooks(server, ids, calls)
        client.close()
    finally:
        server.stop()
        _drop(backend, admin, name)
    engine = patients * sets / (last_score - first_vital)
    print(f"{backend:<10} ({_engine(source)}) ingest (baseline): "
          f"{vitals / elapsed:8,.0f} vital signs/s "
          f"({patients * sets} sets, {bundle} per Bundle, over {threads} clients) | "
          f"engine: {engine:7,.0f} scores/s "
          f"= {engine * 6:8,.0f} vital signs/s, lag commit->score p50 "
          f"{statistics.median(lags) * 1000:6.0f} ms, p99 {percentile(lags, 0.99) * 1000:6.0f} ms"
          f" | CPU a vital sign: server {cpu * 1000 / vitals:.3f} ms"
          + (f", PostgreSQL {pg_cpu * 1000 / vitals:.3f} ms" if backend != "sqlite" else "")
          + f" | pool: {pool.summary()}", flush=True)
    for line in hooks:
        print(f"{backend:<10} ({_engine(source)}) {line}", flush=True)


class PoolSampler(threading.Thread):
    """Scrapes the server's pool gauges (``/metrics``) every ``interval`` seconds while
    the stream runs: connections in use and requests waiting for one, on average."""

    def __init__(self, base: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url = base.removesuffix("/fhir") + "/metrics"
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (in use, waiting)
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stopping.wait(self.interval):
                try:
                    text = client.get(self.url).text
                except httpx.HTTPError:
                    continue
                self.samples.append((_gauge(text, 'hygeia_db_pool_connections{state="in_use"}'),
                                     _gauge(text, "hygeia_db_pool_waiting")))

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        used = statistics.mean(s[0] for s in self.samples)
        waiting = statistics.mean(s[1] for s in self.samples)
        queued = sum(1 for s in self.samples if s[1] > 0) / len(self.samples)
        return (f"{used:.1f} connections in use, {waiting:.2f} requests waiting "
                f"(some waiting in {queued:.0%} of {len(self.samples)} samples)")


def _gauge(text: str, name: str) -> float:
    """The value of the metric line that starts with ``name`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _profiler(server: Server, folder: Path | None, name: str
              ) -> subprocess.Popen[bytes] | None:
    """py-spy sampling every thread of the server, idle ones too, into
    ``folder/name.txt`` (with thread names: where the engine's thread spends its wall
    time), when ``--profile`` asks for it."""
    if folder is None:
        return None
    return start_py_spy(server.process.pid, folder / f"{name}.txt", 100, "--idle",
                        "--threads")


def _backlog_part(backend: str, admin: str, folder: str, name: str, patients: int,
                  sets: int, source: Path | None = None) -> None:
    """The engine's capacity over a backlog, beside the load rate."""
    try:
        load_rate, drain_rate, cpu_rate = measure_backlog(
            _url(backend, admin, folder, name + "_backlog"), patients, sets, source)
    finally:
        _drop(backend, admin, name + "_backlog")
    print(f"{backend:<10} ({_engine(source)}) backlog: hygeia load (baseline) "
          f"{load_rate:8,.0f} vital signs/s | "
          f"engine drains {drain_rate:8,.0f} vital signs/s; ratio {drain_rate / load_rate:.2f}"
          f"; {cpu_rate:8,.0f} vital signs per second of the server's CPU", flush=True)


def _live_part(backend: str, admin: str, folder: str, name: str, patients: int,
               sets: int, source: Path | None = None) -> None:
    """The engine while ``hygeia load`` ingests into the running server's database
    (served from ``source``, another checkout's ``src``, when given)."""
    try:
        live_rate, live_engine, commit_lags, live_lags = measure_live_load(
            _url(backend, admin, folder, name + "_live"), patients, sets, source)
    finally:
        _drop(backend, admin, name + "_live")
    print(f"{backend:<10} ({_engine(source)}) live load: hygeia load into the running "
          f"server (baseline) "
          f"{live_rate:8,.0f} vital signs/s | engine {live_engine:8,.0f} vital signs/s, lag "
          f"commit->score p50 {statistics.median(commit_lags) * 1000:6.0f} ms, p99 "
          f"{percentile(commit_lags, 0.99) * 1000:6.0f} ms ({len(commit_lags)} scores); "
          f"from the loader's stamp p50 {statistics.median(live_lags) * 1000:6.0f} ms, p99 "
          f"{percentile(live_lags, 0.99) * 1000:6.0f} ms", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--sets", type=int, default=2, help="observation sets per patient")
    parser.add_argument("--threads", type=int, default=4, help="clients streaming vitals")
    parser.add_argument("--bundle", type=int, default=1,
                        help="observation sets per transaction Bundle streamed")
    parser.add_argument("--calls", type=int, default=200, help="CDS calls per service")
    parser.add_argument("--parts", default=",".join(sorted(PARTS)),
                        help="what to measure: stream (HTTP ingest and hooks), backlog, live")
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="SRC",
                        help="also measure each part with the server of another "
                             "checkout's src folder first (a same-run baseline engine)")
    parser.add_argument("--db-prefix", default="bench_clinical",
                        help="scratch database names start with this")
    parser.add_argument("--rounds", type=int, default=1,
                        help="stream rounds; with --baseline-src the engine that goes "
                             "first alternates")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy this checkout's server during each stream into DIR "
                             "(raw collapsed stacks, every thread, idle too)")
    args = parser.parse_args(argv)
    parts = frozenset(args.parts.split(","))
    if parts - PARTS:
        parser.error(f"unknown parts: {', '.join(sorted(parts - PARTS))}")
    for backend in args.backends.split(","):
        run(backend, args.postgres, args.patients, args.sets, args.threads, args.calls,
            args.bundle, parts, args.db_prefix, args.baseline_src, args.rounds,
            args.profile)


if __name__ == "__main__":
    main()
