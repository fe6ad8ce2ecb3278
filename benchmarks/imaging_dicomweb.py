"""Imaging: DICOMweb STOW-RS, QIDO-RS and WADO-RS against a real ``hygeia serve``, beside
a plain file copy of the same instances in the same run.

    python -m benchmarks.imaging_dicomweb --backends sqlite,postgresql --instances 2000 \\
        --qido-instances 20000

``--parts`` chooses among ``copy``, ``stow``, ``qido`` and ``wado`` (default: all).
The DIMSE part of issue 19 (C-STORE beside Orthanc) is ``benchmarks/imaging.py``,
the index alone, in process, ``benchmarks/imaging_index.py``.

Instances: pydicom's ``CT_small.dcm`` (a 128x128 CT slice, 39 KB) with new UIDs, in
studies of ``--per-study`` instances (one series each) for ``--patients`` patients
with dates over two years. Generated once per run: the template is written by pydicom
once per study and the SOP Instance UID (a placeholder of the same length) replaced in
the bytes for each instance, so generating 100,000 takes seconds.

- copy (baseline): each instance written to its own file in a fresh folder and
  fsynced, as the archive does: files/s and MB/s.
- stow: ``--clients`` threads each POST one study per request (multipart/related of
  its instances) to ``/dicomweb/studies``: instances/s and MB/s, wall time.
- qido: after ``--qido-instances`` more instances are stored the same way (the index
  then holds both sets, plus ``--qido-seed`` instances written straight into the
  index before the server started, and on PostgreSQL vacuumed and analyzed as
  autovacuum would soon after: 100,000 take a minute on SQLite, ten on PostgreSQL,
  where storing them takes an hour), ``--queries`` viewer queries, round-robin over: a patient's
  studies, studies in a date range of one modality, a fuzzy name, a study's series,
  a series' instances. p50 and p95 latency (ms) of each kind and of all.
- wado: every study of the first set retrieved whole (``transfer-syntax=*``) by
  ``--clients`` threads: MB/s and instances/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import DEFAULT_PG, Server, drop_postgres_db, fresh_postgres_db

DICOM = "application/dicom"
BOUNDARY = "hygeia-bench-boundary"
PLACEHOLDER_LENGTH = 40


@dataclass(frozen=True, slots=True)
class Study:
    study: str
    series: str
    patient: str
    instances: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.instances)


_UIDS = itertools.count()  # one counter per run: the two generated sets never share a UID


def uid(counter: Iterator[int] = _UIDS, length: int = PLACEHOLDER_LENGTH) -> str:
    """A UID of exactly ``length`` characters under 2.25 (no leading zeros)."""
    digits = length - len("2.25.")
    return f"2.25.{10 ** (digits - 1) + next(counter)}"


def generate(count: int, per_study: int, patients: int, tag: str) -> list[Study]:
    """``count`` instances of CT_small.dcm with new UIDs, in studies of ``per_study``."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    template = dcmread(get_testdata_file("CT_small.dcm", download=False))
    counter = _UIDS
    placeholder = uid(iter([10 ** 12]))
    studies: list[Study] = []
    for number in range((count + per_study - 1) // per_study):
        patient = f"{tag}{number % patients:05d}"
        template.PatientID = patient
        template.PatientName = f"Bench{tag}{number % patients:05d}^Pat"
        template.StudyDate = f"{2024 + number % 2}{(number % 12) + 1:02d}15"
        template.AccessionNumber = f"A{tag}{number:07d}"
        template.Modality = "CT" if number % 3 else "MR"
        template.StudyInstanceUID = uid(counter)
        template.SeriesInstanceUID = uid(counter)
        template.SOPInstanceUID = placeholder
        template.file_meta.MediaStorageSOPInstanceUID = placeholder
        out = io.BytesIO()
        template.save_as(out, enforce_file_format=True)
        raw = out.getvalue()
        size = min(per_study, count - number * per_study)
        instances = tuple(raw.replace(placeholder.encode(), uid(counter).encode())
                          for _ in range(size))
        studies.append(Study(template.StudyInstanceUID, template.SeriesInstanceUID, patient,
                             instances))
    return studies


def seed_index(db_url: str, count: int, per_study: int, patients: int, tag: str
               ) -> list[Study]:
    """``count`` instances written straight into the archive's index (no files, no
    ImagingStudy to write), for QIDO-RS over more instances than STOW-RS could store in
    the time of a benchmark; the studies as :func:`generate` makes them (no bytes)."""
    from pydicom.data import get_testdata_file

    from hygeia.imaging import index, tables  # noqa: F401  (the imaging tables)
    from hygeia.imaging.parsing import parse
    from hygeia.store import as_sql, open_repository, writing

    template = parse(Path(str(get_testdata_file("CT_small.dcm", download=False))))
    # every installed pillar's tables, as `hygeia serve` expects them
    subprocess.run([sys.executable, "-m", "hygeia.cli.main", "db", "migrate", "--db", db_url],
                   check=True, capture_output=True)
    repository = open_repository(db_url)
    studies: list[Study] = []
    now = time.time_ns() // 1000
    try:
        for first in range(0, count, 5000):  # one transaction per 5000 instances
            with writing(repository) as session:
                sql = as_sql(session)
                for number in range(first, min(count, first + 5000)):
                    if number % per_study == 0:
                        studies.append(_seed_study(len(studies), patients, tag))
                    parsed = _seeded(template, studies[-1], number)
                    index.add_instance(sql, parsed, "0" * 64, 39206, "BENCH", now)
                sql.execute("DELETE FROM imaging_pending", ())  # nothing for the linker
    finally:
        repository.close()
    if db_url.startswith("postgresql"):
        _vacuum(db_url)
    return studies


def _vacuum(db_url: str) -> None:
    """VACUUM ANALYZE the index after the bulk load, as autovacuum would within minutes:
    measured right after it, the per-instance updates of the study and series rows
    leave dead rows and stale statistics (a date + modality query took 100-500 ms
    instead of 1 ms)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as connection:
        for table in ("imaging_study", "imaging_series", "imaging_instance",
                      "imaging_name_word"):
            connection.execute(f"VACUUM ANALYZE {table}")


def _seed_study(number: int, patients: int, tag: str) -> Study:
    return Study(uid(), uid(), f"{tag}{number % patients:05d}", ())


def _seeded(template: Any, study: Study, number: int) -> Any:
    """The template's Parsed with this study's patient, date, modality and new UIDs."""
    order = int(study.study[-6:])

    def text(vr: str, value: str) -> dict[str, Any]:
        return {"vr": vr, "Value": [{"Alphabetic": value} if vr == "PN" else value]}

    return dataclasses.replace(
        template, sop_instance=uid(), study_uid=study.study, series_uid=study.series,
        study={**template.study, "00100020": text("LO", study.patient),
               "00100010": text("PN", f"Bench{study.patient}^Pat"),
               "00080020": text("DA", f"{2024 + order % 2}{(order % 12) + 1:02d}15"),
               "00080050": text("SH", f"A{number}")},
        series={**template.series, "0020000E": text("UI", study.series),
                "00080060": text("CS", "CT" if order % 3 else "MR")})


def multipart(instances: tuple[bytes, ...]) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: {DICOM}\r\n\r\n".encode()
    return b"".join(head + data + b"\r\n" for data in instances) + \
        f"--{BOUNDARY}--\r\n".encode()


def in_threads(clients: int, work: list[Study], task: Callable[[httpx.Client, Study], None]
               ) -> float:
    """Run ``task`` over ``work`` on ``clients`` threads (an httpx client each); seconds."""
    local = threading.local()

    def run(study: Study) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=300)
        task(local.client, study)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, work))
    return time.perf_counter() - started


def file_copy_baseline(studies: list[Study]) -> dict[str, float]:
    """Each instance to its own file, fsynced (what the archive does before answering)."""
    folder = Path(tempfile.mkdtemp(prefix="hygeia-bench-copy-"))
    try:
        started = time.perf_counter()
        count = size = 0
        for study in studies:
            for data in study.instances:
                path = folder / f"{count}.dcm"
                with open(path, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                count += 1
                size += len(data)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"instances/s": count / seconds, "MB/s": size / seconds / 1e6}


def dicomweb_stow(base: str, studies: list[Study], clients: int) -> dict[str, float]:
    """STOW-RS, one study per request, ``clients`` at once."""
    def store(client: httpx.Client, study: Study) -> None:
        response = client.post(f"{base}/studies", content=multipart(study.instances),
                               headers={"Content-Type": f'multipart/related; type="{DICOM}"; '
                                                        f"boundary={BOUNDARY}"})
        if response.status_code != 200:
            raise RuntimeError(f"STOW-RS answered {response.status_code}: {response.text[:300]}")

    seconds = in_threads(clients, studies, store)
    count = sum(len(study.instances) for study in studies)
    return {"instances/s": count / seconds, "MB/s": sum(s.size for s in studies) / seconds / 1e6,
            "seconds": seconds}


def dicomweb_qido(base: str, studies: list[Study], queries: int) -> dict[str, float]:
    """Viewer queries, round-robin over five kinds; p50/p95 in ms per kind and overall."""
    kinds: list[tuple[str, Callable[[Study], tuple[str, dict[str, str]]]]] = [
        ("patient", lambda s: ("/studies", {"PatientID": s.patient})),
        ("date+modality", lambda s: ("/studies", {"StudyDate": "20240101-20240630",
                                                  "ModalitiesInStudy": "CT", "limit": "50"})),
        ("fuzzy name", lambda s: ("/studies", {"PatientName": f"bench{s.patient}",
                                               "fuzzymatching": "true"})),
        ("series", lambda s: (f"/studies/{s.study}/series", {})),
        ("instances", lambda s: (f"/studies/{s.study}/series/{s.series}/instances",
                                 {"limit": "100"})),
    ]
    timings: dict[str, list[float]] = {name: [] for name, _ in kinds}
    with httpx.Client(timeout=60) as client:
        for number in range(queries):
            name, make = kinds[number % len(kinds)]
            study = studies[(number * 7919) % len(studies)]
            path, params = make(study)
            started = time.perf_counter()
            response = client.get(base + path, params=params)
            timings[name].append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or not response.json():
                raise RuntimeError(f"QIDO-RS {path} {params}: {response.status_code} "
                                   f"{response.text[:200]}")
    result: dict[str, float] = {}
    for name, values in timings.items():
        result[f"{name} p50 ms"] = statistics.median(values)
        result[f"{name} p95 ms"] = _p95(values)
    every = [value for values in timings.values() for value in values]
    result["all p50 ms"] = statistics.median(every)
    result["all p95 ms"] = _p95(every)
    return result


def dicomweb_wado(base: str, studies: list[Study], clients: int) -> dict[str, float]:
    """Whole studies as stored (``transfer-syntax=*``), ``clients`` at once."""
    received = [0]
    lock = threading.Lock()
    accept = f'multipart/related; type="{DICOM}"; transfer-syntax=*'

    def fetch(client: httpx.Client, study: Study) -> None:
        size = 0
        with client.stream("GET", f"{base}/studies/{study.study}",
                           headers={"Accept": accept}) as response:
            if response.status_code != 200:
                raise RuntimeError(f"WADO-RS answered {response.status_code}")
            for chunk in response.iter_bytes():
                size += len(chunk)
        with lock:
            received[0] += size

    seconds = in_threads(clients, studies, fetch)
    count = sum(len(study.instances) for study in studies)
    return {"instances/s": count / seconds, "MB/s": received[0] / seconds / 1e6}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _print(title: str, figures: dict[str, float]) -> None:
    shown = ", ".join(f"{key} {value:,.1f}" for key, value in figures.items())
    print(f"  {title:<34} {shown}", flush=True)


def run_backend(backend: str, args: argparse.Namespace, studies: list[Study],
                extra: list[Study]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hygeia-bench-imaging-"))
    name = f"hygeia_bench_imaging_{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{folder}/bench.db" if backend == "sqlite" else \
        fresh_postgres_db(args.postgres, name)
    seeded: list[Study] = []
    if args.qido_seed and "qido" in args.parts:
        started = time.perf_counter()
        seeded = seed_index(url, args.qido_seed, args.per_study, args.patients,
                            uuid.uuid4().hex[:4].upper())
        print(f"{backend}: {args.qido_seed:,} instances written to the index in "
              f"{time.perf_counter() - started:.1f} s (no files)", flush=True)
    server = Server(url, "--files", str(folder / "files"), cwd=folder)
    base = server.base.removesuffix("/fhir") + "/dicomweb"
    print(f"{backend}:", flush=True)
    try:
        if "stow" in args.parts or "wado" in args.parts or "qido" in args.parts:
            _print(f"STOW-RS ({args.clients} clients)", dicomweb_stow(base, studies,
                                                                       args.clients))
        if "qido" in args.parts:
            if extra:
                figures = dicomweb_stow(base, extra, args.clients)
                _print(f"STOW-RS of {sum(len(s.instances) for s in extra):,} more", figures)
            total = sum(len(s.instances) for s in studies + extra) + args.qido_seed
            _print(f"QIDO-RS over {total:,} instances",
                   dicomweb_qido(base, studies + extra + seeded, args.queries))
        if "wado" in args.parts:
            _print(f"WADO-RS ({args.clients} clients)", dicomweb_wado(base, studies,
                                                                       args.clients))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        if backend != "sqlite":
            drop_postgres_db(args.postgres, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--parts", default="copy,stow,qido,wado",
                        help="any of copy, stow, qido, wado (comma-separated)")
    parser.add_argument("--instances", type=int, default=2000,
                        help="instances stored and retrieved (default 2000)")
    parser.add_argument("--qido-instances", type=int, default=20000,
                        help="more instances stored before the QIDO-RS queries (default "
                             "20000; the issue's target is 100000)")
    parser.add_argument("--qido-seed", type=int, default=0,
                        help="instances written straight into the index before the server "
                             "starts, for QIDO-RS over 100000 without storing them one by "
                             "one (default 0)")
    parser.add_argument("--per-study", type=int, default=20)
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--postgres", default=DEFAULT_PG)
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    tag = uuid.uuid4().hex[:4].upper()
    started = time.perf_counter()
    studies = generate(args.instances, args.per_study, args.patients, tag)
    extra = generate(args.qido_instances, args.per_study, args.patients, tag + "X") \
        if "qido" in args.parts else []
    count = sum(len(s.instances) for s in studies)
    print(f"{count:,} instances ({sum(s.size for s in studies) / 1e6:,.1f} MB) in "
          f"{len(studies):,} studies, and {sum(len(s.instances) for s in extra):,} more for "
          f"QIDO-RS, generated in {time.perf_counter() - started:.1f} s; measured on a "
          "shared 2-core machine, under load", flush=True)
    if "copy" in args.parts:
        _print("baseline: file copy + fsync", file_copy_baseline(studies))
    for backend in args.backends.split(","):
        run_backend(backend, args, studies, extra)


if __name__ == "__main__":
    main()
