"""How the NEWS2 engine's read of a patient's vital signs grows with the patient's history.

The engine (``clinical/news2/record.readings_for``) reads, for each batch, the vital
signs from the batch's earliest set on, then searches the parameters a patient lacks
there (for a bedside monitor: consciousness and oxygen, which it never sends) over the
rest of the window. Both are ``Observation?patient=..&code=..&date=..`` searches. This
measures the time of one such read for one monitored patient as the history grows,
minute by minute, each minute a monitor's set of five vital signs (respiration, SpO2,
a blood-pressure panel, pulse, temperature); the baseline is the same read with the
shortest history, in the same run. A read that does not grow with the history is
the goal: a monitor adds 7,200 Observations a day.

Each size prints two lines: ``store`` (``readings_for``, what a batch reads when the
engine's memory cannot answer: after a start, for late data older than it holds) and
``engine`` (``News2Engine._readings`` and ``_scores`` as a batch of the feed makes
them: the memory, having learned the patient from one store read, follows the newest
set's events and answers; ``news2/memory.py``, ADR 0046).

    python -m benchmarks.news2_history [--backends sqlite,postgresql]
        [--minutes 60,600,3000] [--calls 20] [--db-prefix bench_news2_history]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_PG, drop_postgres_db, fresh_postgres_db
from hygeia.clinical.news2.engine import News2Engine
from hygeia.clinical.news2.inputs import readings_of
from hygeia.clinical.news2.record import readings_for
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.server import FhirRequest, FhirService
from hygeia.store import Repository, open_repository

LOINC = "http://loinc.org"
HOUR = 3600 * 1_000_000
START = 1_767_225_600  # 2026-01-01T00:00:00Z
PER_BUNDLE = 100  # sets per batch Bundle written


def at(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + minute * 60))


def reading(patient: str, code: str, when: str, value: float, unit: str,
            **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": patient}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit},
            **extra}


def monitor_set(patient: str, minute: int) -> list[dict[str, Any]]:
    """What a bedside monitor sends each minute: no consciousness, no oxygen."""
    when = at(minute)
    panel = reading(patient, "85354-9", when, 0, "mm[Hg]")
    del panel["valueQuantity"]
    panel["component"] = [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
         "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]
    return [reading(patient, "9279-1", when, 16, "/min"),
            reading(patient, "59408-5", when, 97, "%"), panel,
            reading(patient, "8867-4", when, 72, "/min"),
            reading(patient, "8310-5", when, 37.0, "Cel")]


def call(service: FhirService, method: str, path: str, body: Any) -> dict[str, Any]:
    response = service.handle(FhirRequest(method, path, [], body, "http://bench/fhir/"))
    data = response.body_dict()
    if response.status >= 300 or data is None:
        raise SystemExit(f"error: {method} {path} answered {response.status}")
    return data


def extend_history(service: FhirService, patient: str, first: int, last: int) -> None:
    """Write the monitor's sets of minutes ``first`` .. ``last - 1``."""
    for start in range(first, last, PER_BUNDLE):
        entries = [{"resource": resource, "request": {"method": "POST", "url": "Observation"}}
                   for minute in range(start, min(last, start + PER_BUNDLE))
                   for resource in monitor_set(patient, minute)]
        call(service, "POST", "", {"resourceType": "Bundle", "type": "batch",
                                    "entry": entries})


def read_ms(service: FhirService, patient: str, minutes: int, calls: int
            ) -> tuple[float, float]:
    """Median (wall, this process's CPU) ms of the engine's read for a batch at the
    newest set (the window of one hour before it, as a score of that set uses). On
    PostgreSQL the database's own work shows in the wall time only."""
    end = fhir_datetime_range(at(minutes - 1))[0]
    walls, cpus = [], []
    for _ in range(calls):
        with service.reader() as session:
            started, cpu = time.perf_counter(), time.process_time()
            found = readings_for(session, {patient: (end - HOUR, end)}, 2 * HOUR,
                                 window=HOUR)
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        if not found[patient]:
            raise SystemExit("error: the read found none of the patient's vital signs")
    return statistics.median(walls), statistics.median(cpus)


def engine_read_ms(service: FhirService, patient: str, minutes: int, calls: int
                   ) -> tuple[float, float]:
    """Median (wall, CPU) ms of the engine's reads for a batch of the newest set: the
    set's events followed by the memory, then the vital signs' and the scores' reads
    (answered by the memory once it learned the patient, in a first read not timed)."""
    end = fhir_datetime_range(at(minutes - 1))[0]
    engine = News2Engine(service)
    newest = monitor_set(patient, minutes - 1)
    current = {f"Observation/{number}": (patient, readings_of({**resource, "id": number}))
               for number, resource in enumerate(newest)}
    walls, cpus = [], []
    for call_number in range(calls + 1):
        with service.reader() as session:
            started, cpu = time.perf_counter(), time.process_time()
            engine.memory.follow(call_number, call_number + 1, list(current), current)
            remember = engine.memory.score_changes
            found = engine._readings(session, {patient: (end - HOUR, end)}, 2 * HOUR, {},
                                     remember=remember)
            engine._scores(session, {patient: end - engine.set}, remember)
            if call_number:  # the first learns the patient from the store
                walls.append((time.perf_counter() - started) * 1000)
                cpus.append((time.process_time() - cpu) * 1000)
        if not found[patient]:
            raise SystemExit("error: the engine's read found none of the vital signs")
    if len(engine.memory) != 1:
        raise SystemExit("error: the engine's memory did not learn the patient")
    return statistics.median(walls), statistics.median(cpus)


def measure(repository: Repository, label: str, sizes: list[int], calls: int) -> None:
    service = FhirService(repository)
    try:
        patient = "Patient/" + call(service, "POST", "Patient",
                                    {"resourceType": "Patient"})["id"]
        written, baseline = 0, None
        for minutes in sizes:
            extend_history(service, patient, written, minutes)
            written = minutes
            wall, cpu = read_ms(service, patient, minutes, calls)
            baseline = baseline or wall
            print(f"{label:<10} store  history {minutes:>6,} minutes ({5 * minutes:>7,} "
                  f"Observations): {wall:7.2f} ms a read ({cpu:6.2f} CPU ms here) | "
                  f"baseline {sizes[0]:,} minutes {baseline:6.2f} ms; ratio "
                  f"{wall / baseline:5.2f}", flush=True)
            wall, cpu = engine_read_ms(service, patient, minutes, calls)
            print(f"{label:<10} engine history {minutes:>6,} minutes ({5 * minutes:>7,} "
                  f"Observations): {wall:7.2f} ms a read ({cpu:6.2f} CPU ms here) | "
                  f"store read of the same size above (baseline)", flush=True)
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--minutes", default="60,600,3000",
                        help="history sizes measured, in monitor minutes (ascending)")
    parser.add_argument("--calls", type=int, default=20, help="reads timed per size")
    parser.add_argument("--db-prefix", default="bench_news2_history")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.minutes.split(","))
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as scratch:
                repository = open_repository(f"sqlite:///{Path(scratch) / 'history.db'}")
                try:
                    measure(repository, backend, sizes, args.calls)
                finally:
                    repository.close()
        else:
            url = fresh_postgres_db(args.postgres, args.db_prefix)
            repository = open_repository(url)
            try:
                measure(repository, backend, sizes, args.calls)
            finally:
                repository.close()
                drop_postgres_db(args.postgres, args.db_prefix)


if __name__ == "__main__":
    main()
