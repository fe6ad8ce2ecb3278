"""Imaging benchmark, issue 19's whole Speed section in one run, beside same-run baselines.

    python -m benchmarks.imaging [--instances 2000] [--associations 4]
        [--backends sqlite,postgresql] [--qido-instances 20000] [--qido-seed 0]
        [--parts copy,cstore,stow,qido,wado] [--no-orthanc]

Instances: pydicom's ``CT_small.dcm`` (a 128x128 CT slice, 39 KB) with new UIDs, in
studies of ``--per-study`` instances (one series each) for ``--patients`` patients
with dates over two years. Generated once per run (the template written by pydicom
once per study, the SOP Instance UID, a placeholder of the same length, replaced in
the bytes for each instance, so 100,000 take seconds) and written to files for the
DIMSE sender. Every part uses the same ``--instances``:

- copy (baseline): each instance copied to its own file and fsynced, as the archive
  does before answering: instances/s and MB/s.
- cstore: dcmtk's storescu (one process per association) sends the set over 1 and
  over ``--associations`` associations to Orthanc (the baseline: the Debian package
  with default settings apart from its ports and folders; the issue's target is at
  least half its rate) and to ``hygeia serve --dicom-port`` on each backend (a fresh
  database each time; every instance fsynced and indexed before its status).
- stow: the same set over STOW-RS into a fresh server, ``--clients`` threads each
  POSTing one study per request: instances/s and MB/s.
- qido: on that server, after ``--qido-instances`` more are stored over STOW-RS (and
  ``--qido-seed`` written straight into the index before it started, on PostgreSQL
  vacuumed and analyzed as autovacuum would soon after: 100,000 take a minute on
  SQLite, ten on PostgreSQL, where storing them takes an hour), ``--queries``
  viewer queries round-robin over: a patient's studies, studies in a date range of
  one modality, a fuzzy name, a study's series, a series' instances: p50 and p95
  (ms) of each kind and of all.
- wado: every study of the set retrieved whole as stored (``transfer-syntax=*``) by
  ``--clients`` threads: MB/s and instances/s.

The index alone, in process, over 100,000 instances: ``benchmarks/imaging_index.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
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

from benchmarks.common import (
    DEFAULT_PG,
    Server,
    drop_postgres_db,
    free_port,
    fresh_postgres_db,
)

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
                      "imaging_name_index"):
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
    print(f"  {title:<46} {shown}", flush=True)


def send_dcmtk(paths: list[Path], port: int, title: str, associations: int) -> float:
    """Seconds for ``associations`` dcmtk storescu processes to C-STORE ``paths``."""
    shares = [paths[i::associations] for i in range(associations)]
    began = time.perf_counter()
    senders = [subprocess.Popen(["storescu", "-aec", title, "-aet", "BENCH", "127.0.0.1",
                                 str(port), *map(str, share)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for share in shares]
    failures = [sender for sender in senders if sender.wait() != 0]
    took = time.perf_counter() - began
    if failures:
        error = failures[0].stderr.read() if failures[0].stderr is not None else b""
        raise RuntimeError(f"storescu failed: {error[:300]!r}")
    return took


class Orthanc:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("Orthanc")
        if binary is None:
            raise RuntimeError("Orthanc is not installed (apt-get install orthanc)")
        self.http, self.port = free_port(), free_port()
        folder.mkdir()
        config = {"Name": "bench", "StorageDirectory": str(folder / "storage"),
                  "IndexDirectory": str(folder / "index"), "HttpPort": self.http,
                  "DicomPort": self.port, "DicomAet": "ORTHANC", "Plugins": [],
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False}
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.process = subprocess.Popen([binary, str(folder / "orthanc.json")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.http}/system").status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def write_files(studies: list[Study], folder: Path) -> list[Path]:
    """The instances as Part 10 files, for dcmtk's storescu (not timed)."""
    folder.mkdir(parents=True)
    paths = []
    for data in (data for study in studies for data in study.instances):
        path = folder / f"{len(paths):06d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


class Backend:
    """A fresh database on ``backend`` and a ``hygeia serve`` (with a DICOM port) on it."""

    def __init__(self, backend: str, args: argparse.Namespace, seed: int = 0) -> None:
        self.backend, self.args = backend, args
        self.folder = Path(tempfile.mkdtemp(prefix="hygeia-bench-imaging-"))
        self.name = f"hygeia_bench_imaging_{uuid.uuid4().hex[:8]}"
        self.url = f"sqlite:///{self.folder}/bench.db" if backend == "sqlite" else \
            fresh_postgres_db(args.postgres, self.name)
        self.seeded: list[Study] = []
        if seed:
            started = time.perf_counter()
            self.seeded = seed_index(self.url, seed, args.per_study, args.patients,
                                     uuid.uuid4().hex[:4].upper())
            print(f"  ({seed:,} instances written to the {backend} index in "
                  f"{time.perf_counter() - started:.1f} s, no files)", flush=True)
        self.dicom_port = free_port()
        self.server = Server(self.url, "--files", str(self.folder / "files"),
                             "--dicom-port", str(self.dicom_port), cwd=self.folder)
        self.dicomweb = self.server.base.removesuffix("/fhir") + "/dicomweb"

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.backend != "sqlite":
            drop_postgres_db(self.args.postgres, self.name)


def rate(count: int, size: int, seconds: float) -> dict[str, float]:
    return {"instances/s": count / seconds, "MB/s": size / seconds / 1e6, "s": seconds}


def c_store_part(args: argparse.Namespace, studies: list[Study], files: list[Path],
                 scratch: Path) -> None:
    """Orthanc, then Hygeia on each backend, over 1 and ``--associations``."""
    size = sum(path.stat().st_size for path in files)
    for associations in sorted({1, args.associations}):
        label = f"{associations} association{'s' if associations > 1 else ''}"
        if not args.no_orthanc:
            orthanc = Orthanc(scratch / f"orthanc-{associations}")
            try:
                seconds = send_dcmtk(files, orthanc.port, "ORTHANC", associations)
                _print(f"C-STORE baseline: Orthanc, {label}", rate(len(files), size, seconds))
            finally:
                orthanc.stop()
        for backend in args.backends:
            with Backend(backend, args) as hygeia:
                seconds = send_dcmtk(files, hygeia.dicom_port, "HYGEIA", associations)
                _print(f"C-STORE Hygeia {backend}, {label}", rate(len(files), size, seconds))


def dicomweb_part(args: argparse.Namespace, backend: str, studies: list[Study],
                  extra: list[Study]) -> None:
    """STOW-RS of the set into a fresh server, then QIDO-RS and WADO-RS on it."""
    seed = args.qido_seed if "qido" in args.parts else 0
    with Backend(backend, args, seed) as hygeia:
        base = hygeia.dicomweb
        _print(f"STOW-RS Hygeia {backend}, {args.clients} clients",
               dicomweb_stow(base, studies, args.clients))
        if "qido" in args.parts:
            if extra:
                _print(f"  (STOW-RS of {sum(len(s.instances) for s in extra):,} more)",
                       dicomweb_stow(base, extra, args.clients))
            total = sum(len(s.instances) for s in studies + extra) + seed
            _print(f"QIDO-RS Hygeia {backend} over {total:,}",
                   dicomweb_qido(base, studies + extra + hygeia.seeded, args.queries))
        if "wado" in args.parts:
            _print(f"WADO-RS Hygeia {backend}, {args.clients} clients",
                   dicomweb_wado(base, studies, args.clients))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="copy,cstore,stow,qido,wado",
                        help="any of copy, cstore, stow, qido, wado (comma-separated)")
    parser.add_argument("--instances", type=int, default=2000,
                        help="instances sent by C-STORE and STOW-RS and retrieved (2000)")
    parser.add_argument("--associations", type=int, default=4,
                        help="concurrent C-STORE associations beside one (default 4)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-orthanc", action="store_true", help="skip the Orthanc baseline")
    parser.add_argument("--qido-instances", type=int, default=20000,
                        help="more instances stored over STOW-RS before the QIDO-RS "
                             "queries (default 20000)")
    parser.add_argument("--qido-seed", type=int, default=0,
                        help="instances written straight into the index before the server "
                             "starts, for QIDO-RS over 100000 without storing them one by "
                             "one (default 0)")
    parser.add_argument("--per-study", type=int, default=20)
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4, help="STOW-RS and WADO-RS clients")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="PostgreSQL admin URL")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    args.backends = args.backends.split(",")
    return args


def main() -> None:
    args = arguments()
    tag = uuid.uuid4().hex[:4].upper()
    started = time.perf_counter()
    studies = generate(args.instances, args.per_study, args.patients, tag)
    extra = generate(args.qido_instances, args.per_study, args.patients, tag + "X") \
        if "qido" in args.parts else []
    count = sum(len(s.instances) for s in studies)
    print(f"{count:,} CT instances ({sum(s.size for s in studies) / 1e6:,.1f} MB) in "
          f"{len(studies):,} studies, and {sum(len(s.instances) for s in extra):,} more for "
          f"QIDO-RS, generated in {time.perf_counter() - started:.1f} s; measured on a "
          f"machine with {os.cpu_count()} cores shared with other work", flush=True)
    if "copy" in args.parts:
        _print("baseline: file copy + fsync", file_copy_baseline(studies))
    with tempfile.TemporaryDirectory(prefix="hygeia-bench-imaging-") as scratch:
        if "cstore" in args.parts:
            files = write_files(studies, Path(scratch) / "source")
            c_store_part(args, studies, files, Path(scratch))
    if args.parts & {"stow", "qido", "wado"}:
        for backend in args.backends:
            dicomweb_part(args, backend, studies, extra)


if __name__ == "__main__":
    main()
