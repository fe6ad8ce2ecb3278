"""SQL on FHIR views over the store: full runs to Parquet, incremental refresh, DuckDB.

    python -m benchmarks.analytics [--patients 1000] [--backends sqlite] [--keep DIR]

Amplifies the Synthea bundles in ../shared/data/synthea-r4 to ``--patients``
re-identified patients (``benchmarks.bulk.write_ndjson``), loads their Patient,
Observation and Condition resources with ``hygeia load`` into a fresh database,
then measures:

1. **Full runs to Parquet**: ``hygeia view run VIEW --format parquet`` (a real
   process, its peak memory sampled) of a patient demographics view, an
   observation view with ``forEachOrNull`` over ``component``, and a condition
   view: resources/s and peak memory (RSS high-water mark and PSS).
2. **Baseline, same run**: a FHIR Bulk Data ``$export`` of the same types from
   ``hygeia serve`` to NDJSON, then DuckDB's ``read_json`` flattening the same
   columns with SQL into Parquet (its own process), end to end.
3. **DuckDB query time** over the views' Parquet files (population questions).
4. **Incremental refresh lag**: with the demographics view materialized and a
   steady write load of Patient updates on ``hygeia serve``, how long a commit
   waits until the view's table holds it, and its Parquet file.

Target (issue 20): a full run at least half as fast as the baseline, under 400 MB.
The machine is shared with other work, so the figures are taken under load.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson

from benchmarks.bulk import build_corpus
from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    Server,
    TreeMemory,
    cpu_seconds,
    drop_postgres_db,
    fresh_postgres_db,
)

TYPES = ("Patient", "Observation", "Condition")
FHIR_JSON = {"Content-Type": "application/fhir+json"}

PATIENT_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "bench_patient", "status": "active",
    "resource": "Patient",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "gender", "path": "gender", "type": "code"},
        {"name": "birth_date", "path": "birthDate", "type": "date"},
        {"name": "deceased", "path": "deceased.ofType(dateTime)", "type": "dateTime"},
        {"name": "family", "path": "name.first().family"},
        {"name": "given", "path": "name.first().given.first()"},
        {"name": "city", "path": "address.first().city"},
        {"name": "state", "path": "address.first().state"},
        {"name": "marital", "path": "maritalStatus.coding.first().code", "type": "code"}]}],
}
OBSERVATION_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "bench_observation", "status": "active",
    "resource": "Observation",
    "select": [
        {"column": [
            {"name": "id", "path": "getResourceKey()"},
            {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
            {"name": "code", "path": "code.coding.first().code", "type": "code"},
            {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
            {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
            {"name": "unit", "path": "value.ofType(Quantity).unit"}]},
        {"forEachOrNull": "component", "column": [
            {"name": "component_code", "path": "code.coding.first().code", "type": "code"},
            {"name": "component_value", "path": "value.ofType(Quantity).value",
             "type": "decimal"}]}],
}
CONDITION_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition", "name": "bench_condition", "status": "active",
    "resource": "Condition",
    "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
        {"name": "code", "path": "code.coding.first().code", "type": "code"},
        {"name": "display", "path": "code.coding.first().display"},
        {"name": "onset", "path": "onset.ofType(dateTime)", "type": "dateTime"},
        {"name": "abatement", "path": "abatement.ofType(dateTime)", "type": "dateTime"},
        {"name": "clinical_status", "path": "clinicalStatus.coding.first().code",
         "type": "code"}]}],
}
VIEWS = {"Patient": PATIENT_VIEW, "Observation": OBSERVATION_VIEW, "Condition": CONDITION_VIEW}

# The same columns flattened by DuckDB from the exported NDJSON (the baseline): JSON
# paths on each line, which (unlike read_json's inferred schema) do not fail on an
# element no resource of the sample happens to have (deceasedDateTime).
_OBJECTS = "read_ndjson_objects('{file}')"
BASELINE_SQL = {
    "Patient": f"""
        SELECT 'Patient/' || (json ->> '$.id') AS id, json ->> '$.gender' AS gender,
               json ->> '$.birthDate' AS birth_date,
               json ->> '$.deceasedDateTime' AS deceased,
               json ->> '$.name[0].family' AS family,
               json ->> '$.name[0].given[0]' AS given,
               json ->> '$.address[0].city' AS city, json ->> '$.address[0].state' AS state,
               json ->> '$.maritalStatus.coding[0].code' AS marital
        FROM {_OBJECTS}""",
    "Observation": f"""
        SELECT 'Observation/' || (json ->> '$.id') AS id,
               json ->> '$.subject.reference' AS patient,
               json ->> '$.code.coding[0].code' AS code,
               json ->> '$.effectiveDateTime' AS effective,
               CAST(json ->> '$.valueQuantity.value' AS DOUBLE) AS value,
               json ->> '$.valueQuantity.unit' AS unit,
               c.component ->> '$.code.coding[0].code' AS component_code,
               CAST(c.component ->> '$.valueQuantity.value' AS DOUBLE) AS component_value
        FROM {_OBJECTS} o
        LEFT JOIN LATERAL (SELECT unnest(json_extract(o.json, '$.component[*]'))
                           AS component) c ON true""",
    "Condition": f"""
        SELECT 'Condition/' || (json ->> '$.id') AS id,
               json ->> '$.subject.reference' AS patient,
               json ->> '$.code.coding[0].code' AS code,
               json ->> '$.code.coding[0].display' AS display,
               json ->> '$.onsetDateTime' AS onset,
               json ->> '$.abatementDateTime' AS abatement,
               json ->> '$.clinicalStatus.coding[0].code' AS clinical_status
        FROM {_OBJECTS}""",
}

QUERIES = {
    "patients by age band and gender": """
        SELECT (date_diff('year', CAST(birth_date AS DATE), DATE '2025-01-01') // 10) * 10
               AS band, gender, count(*) FROM '{Patient}' GROUP BY ALL ORDER BY ALL""",
    "latest systolic BP by age band": """
        WITH bp AS (SELECT patient, arg_max(component_value, effective) AS systolic
                    FROM '{Observation}' WHERE component_code = '8480-6' GROUP BY patient)
        SELECT (date_diff('year', CAST(p.birth_date AS DATE), DATE '2025-01-01') // 20) * 20
               AS band, count(*), round(avg(systolic), 1)
        FROM '{Patient}' p JOIN bp ON bp.patient = p.id GROUP BY ALL ORDER BY ALL""",
    "top 10 active conditions": """
        SELECT display, count(DISTINCT patient) AS patients FROM '{Condition}'
        WHERE clinical_status = 'active' GROUP BY display ORDER BY patients DESC LIMIT 10""",
}


@dataclass
class Measured:
    label: str
    resources: int
    rows: int
    seconds: float
    peak_rss_mb: float
    peak_pss_mb: float
    cpu_seconds: float = 0.0  # user + system of the processes doing it

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def hygeia(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "hygeia.cli.main", *args]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured_process(command: list[str], cwd: Path) -> tuple[float, TreeMemory, float]:
    """Run ``command``; (seconds, its sampled memory, CPU seconds)."""
    cpu = children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(process.pid, interval=0.1)
    _, error = process.communicate()
    seconds = time.perf_counter() - started
    memory.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:5])} failed: {error[-2000:]}")
    return seconds, memory, children_cpu() - cpu


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def one_process(db: str, work: Path, counts: dict[str, int]) -> Measured:
    """The three views in one ``hygeia view run`` (``--out-dir``), as a user runs them."""
    files = []
    for view in VIEWS.values():
        files.append(work / f"{view['name']}.json")
        files[-1].write_bytes(orjson.dumps(view))
    out = work / "together"
    seconds, memory, cpu = measured_process(
        hygeia("view", "run", *map(str, files), "--db", db, "--format", "parquet",
               "--out-dir", str(out), cwd=work), work)
    rows = sum(parquet_rows(out / f"{view['name']}.parquet") for view in VIEWS.values())
    return Measured("view run, all three at once", sum(counts.values()), rows, seconds,
                    memory.hwm_sum_mb(), memory.peak_pss_mb(), cpu)


def full_runs(db: str, work: Path, counts: dict[str, int]) -> list[Measured]:
    results = []
    for kind, view in VIEWS.items():
        file = work / f"{view['name']}.json"
        file.write_bytes(orjson.dumps(view))
        out = work / f"{view['name']}.parquet"
        seconds, memory, cpu = measured_process(
            hygeia("view", "run", str(file), "--db", db, "--format", "parquet",
                   "--out", str(out), cwd=work), work)
        results.append(Measured(f"view run {kind}", counts[kind], parquet_rows(out), seconds,
                                memory.hwm_sum_mb(), memory.peak_pss_mb(), cpu))
    return results


def export_types(base: str, folder: Path) -> tuple[float, dict[str, Path]]:
    """Bulk Data ``$export`` of :data:`TYPES` into ``folder``; (seconds, file per type)."""
    files: dict[str, Path] = {}
    with httpx.Client(timeout=600) as client:
        started = time.perf_counter()
        kickoff = client.get(f"{base}/$export", params={"_type": ",".join(TYPES)},
                             headers={"Accept": "application/fhir+json",
                                      "Prefer": "respond-async"})
        if kickoff.status_code != 202:
            raise RuntimeError(f"$export kick-off: {kickoff.status_code} {kickoff.text[:300]}")
        status = urljoin(f"{base}/", kickoff.headers["Content-Location"])
        while True:
            answer = client.get(status)
            if answer.status_code == 200:
                break
            if answer.status_code != 202:
                raise RuntimeError(f"$export status: {answer.status_code} {answer.text[:300]}")
            time.sleep(0.2)
        for item in answer.json()["output"]:
            target = files.setdefault(item["type"], folder / f"{item['type']}.ndjson")
            with target.open("ab") as out, client.stream("GET", item["url"]) as download:
                for chunk in download.iter_bytes(1 << 20):
                    out.write(chunk)
        seconds = time.perf_counter() - started
        client.delete(status)
    return seconds, files


_DUCKDB_FLATTEN = """
import sys, duckdb
connection = duckdb.connect(":memory:")
connection.execute("SET threads = 2")
connection.execute("COPY (" + sys.argv[1] + ") TO '" + sys.argv[2] + "' (FORMAT parquet)")
"""


def baseline(db: str, work: Path, counts: dict[str, int]) -> tuple[list[Measured], float]:
    """Export then DuckDB per type; (rows, export seconds). Each type's figure carries
    its DuckDB time plus its share of the export time (by resources)."""
    folder = work / "export"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    server = Server(db, cwd=work)
    try:
        cpu = cpu_seconds(server.process.pid)
        exported, files = export_types(server.base, folder)
        export_cpu = cpu_seconds(server.process.pid) - cpu
        server_peak = server.peak_rss_mb()
    finally:
        server.stop()
    total = sum(counts[kind] for kind in TYPES)
    results = []
    for kind in TYPES:
        out = work / f"baseline_{kind}.parquet"
        sql = BASELINE_SQL[kind].format(file=str(files[kind]).replace("'", "''"))
        seconds, memory, cpu = measured_process(
            [sys.executable, "-c", _DUCKDB_FLATTEN, sql, str(out)], work)
        share = counts[kind] / total
        results.append(Measured(f"export+duckdb {kind}", counts[kind], parquet_rows(out),
                                seconds + share * exported, memory.hwm_sum_mb(),
                                memory.peak_pss_mb(), cpu + share * export_cpu))
    print(f"  $export of {total:,} resources: {exported:.1f} s, {export_cpu:.1f} CPU s "
          f"({total / exported:,.0f} resources/s), server peak RSS {server_peak:.0f} MB")
    return results, exported


def duckdb_queries(work: Path) -> list[tuple[str, float, int]]:
    import duckdb

    files = {kind: str(work / f"{VIEWS[kind]['name']}.parquet") for kind in TYPES}
    connection = duckdb.connect(":memory:")
    timings = []
    for label, sql in QUERIES.items():
        best, rows = float("inf"), 0
        for _ in range(3):
            started = time.perf_counter()
            rows = len(connection.execute(sql.format(**files)).fetchall())
            best = min(best, time.perf_counter() - started)
        timings.append((label, best, rows))
    connection.close()
    return timings


class SteadyWriter(threading.Thread):
    """Batches of Patient updates at a steady rate (``per_second`` resources)."""

    def __init__(self, base: str, ids: list[str], per_second: int) -> None:
        super().__init__(daemon=True)
        self.base, self.ids, self.per_second = base, ids, per_second
        self.stopping = threading.Event()
        self.written = 0

    def run(self) -> None:
        batch = max(1, self.per_second // 10)
        position = 0
        with httpx.Client(timeout=60) as client:
            next_at = time.monotonic()
            while not self.stopping.is_set():
                entries = []
                for _ in range(batch):
                    id = self.ids[position % len(self.ids)]
                    position += 1
                    entries.append({"resource": {
                        "resourceType": "Patient", "id": id, "gender": "unknown",
                        "name": [{"family": f"Steady{position}"}], "birthDate": "1970-01-01"},
                        "request": {"method": "PUT", "url": f"Patient/{id}"}})
                answer = client.post(self.base, json={"resourceType": "Bundle", "type": "batch",
                                                      "entry": entries}, headers=FHIR_JSON)
                if answer.status_code == 200:
                    self.written += batch
                next_at += 0.1
                time.sleep(max(0.0, next_at - time.monotonic()))


def refresh_lag(db: str, work: Path, seconds: float, per_second: int
                ) -> tuple[list[float], list[float], int]:
    """(table lags, Parquet lags) in seconds under steady writes, and the writes done."""
    from hygeia.analytics.materialize import registered
    from hygeia.analytics.refresh import CONSUMER
    from hygeia.store import feed_position, open_repository

    view = work / "bench_patient.json"
    made = subprocess.run(hygeia("view", "materialize", str(view), "--db", db, "--dir",
                                 str(work / "analytics"), cwd=work),
                          cwd=work, capture_output=True, text=True)
    if made.returncode != 0:
        raise RuntimeError(f"materialize failed: {made.stderr[-1000:]}")
    server = Server(db, "--view-parquet-seconds", "5", cwd=work)
    marks: list[tuple[float, int]] = []  # (when, feed horizon then)
    table_lags: list[float] = []
    parquet_lags: list[float] = []
    try:
        with open_repository(db) as repository:
            ids = [f"bench-steady-{n}" for n in range(200)]
            writer = SteadyWriter(server.base, ids, per_second)
            writer.start()
            started = time.monotonic()
            pending_table: list[tuple[float, int]] = []
            pending_parquet: list[tuple[float, int]] = []
            while time.monotonic() - started < seconds + 15:
                now = time.monotonic()
                if now - started < seconds:
                    mark = (now, repository.feed_horizon())
                    marks.append(mark)
                    pending_table.append(mark)
                    pending_parquet.append(mark)
                elif writer.is_alive():
                    writer.stopping.set()
                cursor = feed_position(repository, CONSUMER) or 0
                parquet = min(v.parquet_seq for v in registered(repository))
                now = time.monotonic()
                table_lags += [now - t for t, h in pending_table if cursor >= h]
                pending_table = [(t, h) for t, h in pending_table if cursor < h]
                parquet_lags += [now - t for t, h in pending_parquet if parquet >= h]
                pending_parquet = [(t, h) for t, h in pending_parquet if parquet < h]
                if not writer.is_alive() and not pending_table and not pending_parquet:
                    break
                time.sleep(0.1)
            writer.stopping.set()
            writer.join(30)
    finally:
        server.stop()
    return table_lags, parquet_lags, writer.written


def load(db: str, corpus_folder: Path, work: Path) -> float:
    files = [str(corpus_folder / f"{kind}.ndjson") for kind in TYPES]
    started = time.perf_counter()
    loaded = subprocess.run(hygeia("load", *files, "--db", db, "--quiet", cwd=work), cwd=work,
                            capture_output=True, text=True)
    if loaded.returncode != 0:
        raise RuntimeError(f"load failed: {loaded.stderr[-2000:]}")
    return time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(results: list[Measured], baselines: list[Measured]) -> None:
    print(f"  {'':28} {'resources':>10} {'rows':>10} {'seconds':>8} {'res/s':>9} "
          f"{'CPU s':>7} {'RSS MB':>7} {'PSS MB':>7}")
    for item in [*results, *baselines]:
        print(f"  {item.label:28} {item.resources:>10,} {item.rows:>10,} {item.seconds:>8.1f} "
              f"{item.rate:>9,.0f} {item.cpu_seconds:>7.1f} {item.peak_rss_mb:>7.0f} "
              f"{item.peak_pss_mb:>7.0f}")
    theirs = sum(b.seconds for b in baselines)
    theirs_cpu = sum(b.cpu_seconds for b in baselines)
    total = sum(b.resources for b in baselines)
    for label, ours, ours_cpu, peak in (
            ("one process per view", sum(r.seconds for r in results[1:]),
             sum(r.cpu_seconds for r in results[1:]),
             max(r.peak_rss_mb for r in results[1:])),
            ("the three in one process", results[0].seconds, results[0].cpu_seconds,
             results[0].peak_rss_mb)):
        print(f"  {label}: {total / ours:,.0f} resources/s; baseline {total / theirs:,.0f} "
              f"resources/s; speed ratio {theirs / ours:.2f} (target >= 0.5); CPU seconds "
              f"{ours_cpu:.1f} against {theirs_cpu:.1f} (ratio {theirs_cpu / ours_cpu:.2f}); "
              f"peak RSS {peak:.0f} MB (target < 400)")


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> None:
    corpus = build_corpus(args.data, work, args.patients)
    counts = {kind: corpus.counts.get(kind, 0) for kind in TYPES}
    name = f"bench_analytics_{int(time.time())}"
    db = f"sqlite:///{work / 'analytics.db'}" if backend == "sqlite" else \
        fresh_postgres_db(args.postgres, name)
    try:
        print(f"\n== {backend}: {args.patients} patients, "
              + ", ".join(f"{counts[k]:,} {k}" for k in TYPES))
        if args.skip_load and backend == "sqlite" and (work / "analytics.db").exists():
            print("  hygeia load: skipped (--skip-load: the database in --keep)")
        else:
            (work / "analytics.db").unlink(missing_ok=True)
            print(f"  hygeia load: {load(db, corpus.folder, work):.1f} s")
        results = [one_process(db, work, counts), *full_runs(db, work, counts)]
        baselines, _ = baseline(db, work, counts)
        report(results, baselines)
        for label, seconds, rows in duckdb_queries(work):
            print(f"  duckdb {label}: {seconds * 1000:.0f} ms ({rows} rows)")
        table, parquet, written = refresh_lag(db, work, args.lag_seconds, args.writes)
        print(f"  refresh lag under {written / args.lag_seconds:.0f} Patient writes/s for "
              f"{args.lag_seconds:.0f} s: table median {statistics.median(table):.2f} s, "
              f"p95 {percentile(table, 0.95):.2f} s; Parquet median "
              f"{statistics.median(parquet):.2f} s, p95 {percentile(parquet, 0.95):.2f} s "
              "(--view-parquet-seconds 5)")
    finally:
        if backend != "sqlite":
            drop_postgres_db(args.postgres, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the corpus and databases in DIR (a rerun reuses the corpus)")
    parser.add_argument("--writes", type=int, default=100,
                        help="Patient writes per second during the refresh-lag part")
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument("--skip-load", action="store_true",
                        help="SQLite: reuse the database an earlier run left in --keep")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-analytics-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for backend in args.backends.split(","):
            run_backend(backend.strip(), args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
