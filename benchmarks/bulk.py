"""Bulk data benchmark: ``hygeia load`` of NDJSON, then a Bulk Data ``$export`` of it all.

Amplifies the Synthea bundles in ../shared/data/synthea-r4 to ``--patients``
re-identified patients, written as NDJSON (one file per resource type, ids set,
``urn:uuid:`` references rewritten to ``Type/id``), then for each backend loads
them with ``hygeia load`` into a fresh database and exports them all again with a
FHIR Bulk Data Access (v2) client against ``hygeia serve``, and finally imports them
with ``$import`` into a fresh server (a background job, as a server runs it: one
worker process, indexes kept up to date, every commit synced).  Prints resources/s,
MB/s and peak memory (loader and server) beside two baselines measured in the
same run: PostgreSQL ``COPY`` of the raw NDJSON lines into a bare one-column
table, and a plain file copy of as many bytes as the export produced.

    python -m benchmarks.bulk [--patients 1000] [--backends sqlite,postgresql] [--keep DIR]
        [--load-args=--workers=2] [--serve-args=--threads=4] [--against REV] [--skip-import]

``--keep DIR`` writes the NDJSON corpus and the SQLite databases into DIR and keeps
them, with the PostgreSQL databases (named after DIR; drop them by hand); a later
run with the same ``--patients`` reuses the corpus.  Without it everything is removed.
``--against REV`` also loads with another git revision's ``src`` in the same run
and prints the ratio.  Targets (issue 4, this 2-core machine): load >= 10,000
resources/s on SQLite with validation and full indexing, export >= 50,000
resources/s, memory flat under 400 MB however large the data.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import httpx
import orjson

from benchmarks.common import (
    DEFAULT_DATA,
    DEFAULT_PG,
    UUID,
    Server,
    TreeMemory,
    bundle_files,
    drop_postgres_db,
    fresh_postgres_db,
    read_bytes,
    reidentify,
    source_at,
)

LOAD_TARGET = 10_000
EXPORT_TARGET = 50_000
MEMORY_LIMIT_MB = 400
CLOUD_IMPORT_MB_S = (16, 21)  # published anchor: a managed cloud FHIR store's import
JVM_EXPORT_RATE = 700  # published anchor: a JVM FHIR server's export, resources/s
# resources other patients' bundles refer to: every copy gets all of them, so every
# reference in the corpus resolves even when the last copy holds only some patients
SHARED_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location"})
REFERENCE = re.compile(rb'"reference":"urn:uuid:(' + UUID.pattern + rb')"')
POLL_CAP = 0.5  # seconds: the longest wait between two status requests
POLL_DEFAULT = 0.25  # seconds between status requests when the server sends no Retry-After
MB = 1e6


class BenchmarkFailure(Exception):
    """A step produced a wrong result (not just a slow one): reported loudly, run goes on."""


# ---------------------------------------------------------------- the corpus


@dataclass
class Corpus:
    """NDJSON files of the amplified patients: one per resource type in ``folder``."""

    folder: Path
    patients: int
    counts: dict[str, int]
    size: int

    @property
    def resources(self) -> int:
        return sum(self.counts.values())

    def files(self) -> list[Path]:
        return [self.folder / f"{kind}.ndjson" for kind in sorted(self.counts)]


def build_corpus(data: Path, work: Path, patients: int) -> Corpus:
    """The corpus in ``work``: reused when an earlier run wrote the same one, else written."""
    manifest = work / "corpus.json"
    if manifest.exists():
        saved = orjson.loads(manifest.read_bytes())
        if saved.get("patients") == patients and saved.get("data") == str(data.resolve()):
            print(f"corpus: reusing {work / 'ndjson'}")
            return Corpus(work / "ndjson", patients, saved["counts"], saved["size"])
    folder = work / "ndjson"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.ndjson"):
        stale.unlink()
    started = time.perf_counter()
    counts = write_ndjson(bundle_files(data), folder, patients)
    size = sum((folder / f"{kind}.ndjson").stat().st_size for kind in counts)
    manifest.write_bytes(orjson.dumps({"patients": patients, "data": str(data.resolve()),
                                       "counts": counts, "size": size}))
    print(f"corpus: written in {time.perf_counter() - started:.1f} s")
    return Corpus(folder, patients, counts, size)


def write_ndjson(files: list[Path], folder: Path, patients: int) -> dict[str, int]:
    """Write ``patients`` re-identified patients as NDJSON; return resources per type.

    One bundle is in memory at a time: each is turned into NDJSON once and then
    written re-identified for every copy that needs it, so memory does not grow with
    ``patients``.  The files therefore hold all copies of one bundle, then the next.
    """
    types = uuid_types(files)
    seen: set[str] = set()
    patient_files = [path for path in files if _has_patient(read_bytes(path))]
    if not patient_files:
        sys.exit("no bundle with a Patient in the data folder")
    rounds = -(-patients // len(patient_files))  # copies of the whole set, the last partial
    counts: dict[str, int] = {}
    handles: dict[str, IO[bytes]] = {}
    try:
        for path in files:
            blobs = ndjson_by_type(orjson.loads(read_bytes(path)), types, seen)
            position = patient_files.index(path) if path in patient_files else None
            for copy in range(rounds):
                whole = position is None or copy * len(patient_files) + position < patients
                for kind, (blob, lines) in blobs.items():
                    if whole or kind in SHARED_TYPES:
                        if kind not in handles:
                            handles[kind] = (folder / f"{kind}.ndjson").open("wb", 1 << 20)
                        handles[kind].write(reidentify(blob, copy))
                        counts[kind] = counts.get(kind, 0) + lines
    finally:
        for handle in handles.values():
            handle.close()
    return counts


def _has_patient(body: bytes) -> bool:
    return b'"resourceType": "Patient"' in body or b'"resourceType":"Patient"' in body


def uuid_types(files: list[Path]) -> dict[bytes, bytes]:
    """The resource type of every ``urn:uuid:`` fullUrl in the bundles (they refer across)."""
    types: dict[bytes, bytes] = {}
    for path in files:
        for entry in orjson.loads(read_bytes(path)).get("entry", []):
            full_url = entry.get("fullUrl", "")
            if full_url.startswith("urn:uuid:"):
                types[full_url[9:].encode()] = entry["resource"]["resourceType"].encode()
    return types


def ndjson_by_type(bundle: dict[str, Any], types: dict[bytes, bytes], seen: set[str]
                   ) -> dict[str, tuple[bytes, int]]:
    """The bundle's resources as NDJSON per type: id = fullUrl's uuid, references Type/id.

    Synthea repeats some Organizations and Practitioners in several bundles; only the
    first is kept (``seen`` holds the fullUrls written so far), so every id is unique
    and the export can be checked against the corpus count by count.
    """
    lines: dict[str, list[bytes]] = {}

    def local(match: re.Match[bytes]) -> bytes:
        target = match.group(1)
        if target not in types:
            raise BenchmarkFailure(f"reference to urn:uuid:{target.decode()} matches no entry")
        return b'"reference":"' + types[target] + b"/" + target + b'"'

    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        full_url = entry.get("fullUrl", "")
        if full_url in seen:
            continue
        if full_url.startswith("urn:uuid:"):
            seen.add(full_url)
            resource["id"] = full_url[9:]
        line = REFERENCE.sub(local, orjson.dumps(resource))
        lines.setdefault(resource["resourceType"], []).append(line + b"\n")
    return {kind: (b"".join(group), len(group)) for kind, group in lines.items()}


# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the final table."""

    label: str
    resources: int
    seconds: float
    size: int
    memory_mb: float | None = None
    target: int | None = None
    baseline: Row | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    @property
    def mb_s(self) -> float:
        return self.size / MB / self.seconds if self.seconds else 0.0


def print_table(rows: list[Row]) -> None:
    """The summary: every measurement with its ratio to the issue's target and baseline."""
    print(f"\n{'':34}{'resources':>11}{'seconds':>9}{'resources/s':>13}{'MB/s':>9}"
          f"{'peak MB':>9}  ratio to target / to baseline")
    for row in rows:
        memory = "-" if row.memory_mb is None else f"{row.memory_mb:.0f}"
        if row.memory_mb is not None and row.memory_mb > MEMORY_LIMIT_MB:
            memory += "!"
        ratios = []
        if row.target:
            ratios.append(f"{row.rate / row.target:5.2f} of {row.target:,}/s")
        if row.baseline is not None and row.baseline.rate:
            ratios.append(f"{row.rate / row.baseline.rate:5.3f} of {row.baseline.label}")
        ratios.extend(row.notes)
        print(f"{row.label:34}{row.resources:>11,}{row.seconds:>9.2f}{row.rate:>13,.0f}"
              f"{row.mb_s:>9.1f}{memory:>9}  {'; '.join(ratios)}")
    if any(r.memory_mb is not None and r.memory_mb > MEMORY_LIMIT_MB for r in rows):
        print(f"! peak memory above the {MEMORY_LIMIT_MB} MB limit")
    print("peak MB: sampled total PSS of the process tree (4x/s); VmHWM sums printed above")
    anchors = []
    loads = [r for r in rows if r.label.startswith(("load", "$import"))]
    if loads:
        anchors.append(f"cloud FHIR import {CLOUD_IMPORT_MB_S[0]}-{CLOUD_IMPORT_MB_S[1]} MB/s: "
                       + ", ".join(f"{r.label} {r.mb_s / CLOUD_IMPORT_MB_S[0]:.2f}x of the low end"
                                   for r in loads))
    exports = [r for r in rows if r.label.startswith("export")]
    if exports:
        anchors.append(f"JVM export {JVM_EXPORT_RATE} resources/s: "
                       + ", ".join(f"{r.label} {r.rate / JVM_EXPORT_RATE:.0f}x" for r in exports))
    if anchors:
        print("published anchors: " + "; ".join(anchors))


# ---------------------------------------------------------------- baselines


def copy_baseline(corpus: Corpus, admin_url: str, name: str) -> Row:
    """PostgreSQL ``COPY`` of the raw NDJSON lines into a fresh one-text-column table.

    CSV with quote and delimiter characters JSON never holds raw (0x01, 0x02) passes
    every line through untouched, backslashes included: the floor of any load into
    PostgreSQL.
    """
    import psycopg

    url = fresh_postgres_db(admin_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE raw_lines (line text)")
            started = time.perf_counter()
            with connection.cursor() as cursor, cursor.copy(
                    "COPY raw_lines (line) FROM STDIN "
                    "(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')") as copy:
                for path in corpus.files():
                    with path.open("rb") as handle:
                        while block := handle.read(1 << 20):
                            copy.write(block)
            seconds = time.perf_counter() - started
            row = connection.execute("SELECT count(*) FROM raw_lines").fetchone()
            copied = int(row[0]) if row else 0
    finally:
        drop_postgres_db(admin_url, name)
    if copied != corpus.resources:
        raise BenchmarkFailure(f"COPY stored {copied} lines, the corpus has {corpus.resources}")
    print(f"baseline PostgreSQL COPY: {copied:,} lines in {seconds:.2f} s")
    return Row("PG COPY baseline", copied, seconds, corpus.size)


def file_copy_baseline(corpus: Corpus, size: int, folder: Path) -> Row:
    """Read/write ``size`` bytes of the corpus into a new file (1 MiB blocks, no fsync).

    The same bytes as the export produced, moved with no FHIR work at all; the
    newline count makes the resources column comparable.
    """
    target = folder / "file-copy.tmp"
    copied = lines = 0
    started = time.perf_counter()
    with target.open("wb") as out:
        while copied < size:
            for path in corpus.files():
                with path.open("rb") as handle:
                    while copied < size and (block := handle.read(min(1 << 20, size - copied))):
                        out.write(block)
                        copied += len(block)
                        lines += block.count(b"\n")
    seconds = time.perf_counter() - started
    target.unlink()
    print(f"baseline file copy: {copied / MB:.1f} MB in {seconds:.3f} s")
    return Row("file copy baseline", lines, seconds, copied)


# ---------------------------------------------------------------- load


SUMMARY = re.compile(r"Loaded ([\d,]+) resources")


def run_load(label: str, db_url: str, corpus: Corpus, extra: list[str],
             source: Path | None = None) -> Row:
    """``hygeia load`` as a child process: wall time, summary check and peak memory."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    command = [sys.executable, "-m", "hygeia.cli.main", "load", "--db", db_url, "--quiet",
               *extra, str(corpus.folder)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    memory = TreeMemory(process.pid)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    memory.stop()
    output = stdout.decode(errors="replace")
    found = SUMMARY.search(output)
    print(f"{label}: {output.strip().splitlines()[-1] if output.strip() else '(no output)'}")
    print(f"  peak memory {memory.peak_pss_mb():.0f} MB sampled total PSS, "
          f"VmHWM sum {memory.hwm_sum_mb():.0f} MB")
    if process.returncode != 0 or found is None:
        tail = stderr.decode(errors="replace").strip()[-2000:]
        raise BenchmarkFailure(f"{label}: exit status {process.returncode}\n{tail}")
    loaded = int(found.group(1).replace(",", ""))
    if loaded != corpus.resources:
        raise BenchmarkFailure(f"{label}: loaded {loaded:,} resources, "
                               f"the corpus has {corpus.resources:,}")
    return Row(label, loaded, seconds, corpus.size, memory.peak_pss_mb(), LOAD_TARGET)


# ---------------------------------------------------------------- export


@dataclass
class Export:
    """What one Bulk Data export produced, and when."""

    manifest_seconds: float
    total_seconds: float
    counts: dict[str, int]
    size: int
    error_lines: int
    polls: int


class ExportUnavailable(Exception):
    """The server does not implement system-level ``$export`` (404/405/501 on kick-off)."""


def bulk_export(base: str) -> Export:
    """A FHIR Bulk Data Access v2 client: kick-off, poll, manifest, download, delete.

    https://hl7.org/fhir/uv/bulkdata/export.html -- files are streamed and only
    counted (lines, bytes), never held in memory.
    """
    with httpx.Client(timeout=600) as client:
        started = time.perf_counter()
        kickoff = client.get(f"{base}/$export", headers={
            "Accept": "application/fhir+json", "Prefer": "respond-async"})
        if kickoff.status_code in (404, 405, 501):
            raise ExportUnavailable(str(kickoff.status_code))
        if kickoff.status_code != 202 or "Content-Location" not in kickoff.headers:
            raise BenchmarkFailure(f"kick-off: {kickoff.status_code} (expected 202 with "
                                   f"Content-Location) {kickoff.text[:300]}")
        status_url = urljoin(f"{base}/", kickoff.headers["Content-Location"])
        try:
            manifest, polls = poll(client, status_url)
            manifest_seconds = time.perf_counter() - started
            check_manifest(manifest)
            counts: dict[str, int] = {}
            size = 0
            for item in manifest["output"]:
                lines, length = download(client, item)
                counts[item["type"]] = counts.get(item["type"], 0) + lines
                size += length
            error_lines = sum(download(client, item)[0] for item in manifest.get("error", []))
            total_seconds = time.perf_counter() - started
        finally:
            deleted = client.delete(status_url)
            if deleted.status_code not in (200, 202, 204):
                print(f"!! DELETE of the status URL answered {deleted.status_code} "
                      f"(expected 202) {deleted.text[:200]}")
    return Export(manifest_seconds, total_seconds, counts, size, error_lines, polls)


def poll(client: httpx.Client, url: str) -> tuple[dict[str, Any], int]:
    """Poll the status URL while it answers 202; return the 200's manifest and the polls.

    The manifest time is only known to within one poll interval (at most POLL_CAP).
    """
    polls = 0
    while True:
        response = client.get(url, headers={"Accept": "application/json"})
        polls += 1
        if response.status_code == 200:
            manifest: dict[str, Any] = response.json()
            return manifest, polls
        if response.status_code != 202:
            raise BenchmarkFailure(f"status request: {response.status_code} "
                                   f"{response.text[:300]}")
        time.sleep(retry_delay(response.headers.get("Retry-After")))


def retry_delay(header: str | None) -> float:
    """Seconds to wait per ``Retry-After`` (delay-seconds or HTTP-date), at most POLL_CAP."""
    if not header:
        return POLL_DEFAULT
    if header.strip().isdigit():
        return min(float(header), POLL_CAP)
    try:
        when = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return POLL_DEFAULT
    return max(0.0, min(when - time.time(), POLL_CAP))


def check_manifest(manifest: dict[str, Any]) -> None:
    """The complete-status body must carry the fields the IG requires."""
    missing = [key for key in ("transactionTime", "request", "requiresAccessToken", "output",
                               "error") if key not in manifest]
    if missing:
        raise BenchmarkFailure(f"manifest lacks {', '.join(missing)}: "
                               f"{orjson.dumps(manifest)[:300]!r}")
    if manifest["requiresAccessToken"]:
        print("  note: manifest says requiresAccessToken; downloading without a token")
    for item in manifest["output"]:
        if not {"type", "url"} <= item.keys():
            raise BenchmarkFailure(f"output item without type/url: {item}")


def download(client: httpx.Client, item: dict[str, Any]) -> tuple[int, int]:
    """Stream one output file: (lines, bytes); checks the manifest's ``count`` if given."""
    lines = size = 0
    last = b"\n"
    with client.stream("GET", item["url"],
                       headers={"Accept": "application/fhir+ndjson"}) as response:
        if response.status_code != 200:
            raise BenchmarkFailure(f"download {item['url']}: {response.status_code}")
        for chunk in response.iter_bytes(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if size and last != b"\n":
        lines += 1
    if "count" in item and item["count"] != lines:
        print(f"!! {item['url']}: manifest count {item['count']}, file has {lines} lines")
    return lines, size


def run_export(label: str, db_url: str, corpus: Corpus, serve_args: list[str],
               work: Path) -> list[Row]:
    """Serve ``db_url`` and export everything; rows for the manifest and the downloads.

    The server runs in ``work`` so its export files stay in the work folder.
    """
    server = Server(db_url, *serve_args, cwd=work)
    try:
        export = bulk_export(server.base)
        pss, hwm = server.peak_pss_mb(), server.peak_rss_mb()
    finally:
        server.stop()
    total = sum(export.counts.values())
    print(f"{label}: manifest after {export.manifest_seconds:.2f} s ({export.polls} status "
          f"requests, so to within {POLL_CAP} s), all {total:,} resources "
          f"({export.size / MB:.1f} MB) downloaded after {export.total_seconds:.2f} s; "
          f"server peak memory {pss:.0f} MB sampled total PSS, VmHWM sum {hwm:.0f} MB")
    if export.error_lines:
        print(f"!! {label}: {export.error_lines} OperationOutcome lines in the error files")
    mismatches = {kind: (corpus.counts.get(kind, 0), export.counts.get(kind, 0))
                  for kind in sorted(set(corpus.counts) | set(export.counts))
                  if corpus.counts.get(kind, 0) != export.counts.get(kind, 0)}
    if mismatches:
        print(f"!! {label}: EXPORTED COUNTS DIFFER FROM THE LOAD (type: loaded, exported)")
        for kind, (loaded, exported) in mismatches.items():
            print(f"!!   {kind}: {loaded:,}, {exported:,}")
    return [Row(f"{label} (to manifest)", total, export.manifest_seconds, export.size, pss,
                EXPORT_TARGET),
            Row(label, total, export.total_seconds, export.size, pss, EXPORT_TARGET)]


# ---------------------------------------------------------------- import


def run_import(label: str, db_url: str, corpus: Corpus, serve_args: list[str],
               work: Path) -> Row:
    """``$import`` of the whole corpus into a fresh server, as a client would ask for it.

    The NDJSON files are linked into the server's import folder and named in one
    Parameters request; the time runs from the kick-off to the complete status,
    and the manifest's counts must add up to the corpus.
    """
    files = work / f"{label.replace(' ', '-').replace('$', '')}-files"
    folder = files / "import"
    folder.mkdir(parents=True, exist_ok=True)
    for path in corpus.files():
        linked = folder / path.name
        linked.unlink(missing_ok=True)
        os.link(path, linked)
    inputs = [{"name": "input", "part": [{"name": "type", "valueCode": path.stem},
                                         {"name": "url", "valueUri": path.name}]}
              for path in corpus.files()]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueCode": "application/fhir+ndjson"}, *inputs]}
    server = Server(db_url, "--files", str(files), *serve_args, cwd=work)
    try:
        with httpx.Client(timeout=600) as client:
            started = time.perf_counter()
            kickoff = client.post(f"{server.base}/$import", content=orjson.dumps(body), headers={
                "Content-Type": "application/fhir+json", "Prefer": "respond-async"})
            if kickoff.status_code != 202:
                raise BenchmarkFailure(f"{label} kick-off: {kickoff.status_code} "
                                       f"{kickoff.text[:300]}")
            manifest, polls = poll(client, urljoin(f"{server.base}/",
                                                   kickoff.headers["Content-Location"]))
            seconds = time.perf_counter() - started
        pss = server.peak_pss_mb()
    finally:
        server.stop()
        for linked in folder.iterdir():
            linked.unlink()
    stored = sum(item.get("count", 0) for item in manifest.get("output", []))
    errors = sum(item.get("count", 0) for item in manifest.get("error", []))
    print(f"{label}: {stored:,} resources stored, {errors} errors, complete after "
          f"{seconds:.2f} s ({polls} status requests); server peak memory {pss:.0f} MB "
          f"sampled total PSS")
    if stored != corpus.resources or errors:
        raise BenchmarkFailure(f"{label}: stored {stored:,} with {errors} errors, "
                               f"the corpus has {corpus.resources:,}")
    return Row(label, stored, seconds, corpus.size, pss)


# ---------------------------------------------------------------- driver


@dataclass
class Run:
    """State of one benchmark run: where things go and what has been measured."""

    args: argparse.Namespace
    work: Path
    corpus: Corpus
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    def name(self, role: str) -> str:
        """A PostgreSQL database name of this work folder (parallel runs never collide)."""
        digest = hashlib.sha256(str(self.work.resolve()).encode()).hexdigest()[:8]
        return f"hygeia_bench_bulk_{role}_{digest}"

    def database(self, backend: str, role: str) -> str:
        """A fresh database for ``backend``: a file in the work folder or a new PG database."""
        if backend == "sqlite":
            for stale in self.work.glob(f"bulk-{role}.db*"):
                stale.unlink()
            return f"sqlite:///{self.work / f'bulk-{role}.db'}"
        name = self.name(role)
        self.databases.append(name)
        return fresh_postgres_db(self.args.postgres, name)

    def attempt(self, step: str, action: Any) -> Any:
        """Run one step; a wrong result is printed loudly and the run goes on."""
        try:
            return action()
        except BenchmarkFailure as failure:
            print(f"!! {step} FAILED: {failure}")
            self.failures.append(step)
            return None

    def cleanup(self) -> None:
        """Drop the PostgreSQL databases and SQLite files unless ``--keep`` asked for them."""
        if self.args.keep is not None:
            return
        for name in self.databases:
            drop_postgres_db(self.args.postgres, name)
        for database in self.work.glob("bulk-*.db*"):
            database.unlink()


def run_backend(run: Run, backend: str, against: Path | None) -> None:
    """Load (and, with ``--against``, load with the other revision), then export."""
    args = run.args
    url = run.database(backend, "load")
    loaded = run.attempt(f"load {backend}", lambda: run_load(
        f"load {backend}", url, run.corpus, shlex.split(args.load_args)))
    if loaded is None:
        return
    run.rows.append(loaded)
    if against is not None:
        other_url = run.database(backend, "against")
        other = run.attempt(f"load {backend} {args.against}", lambda: run_load(
            f"load {backend} ({args.against})", other_url, run.corpus, [], against))
        if other is not None:
            loaded.notes.append(f"{loaded.rate / other.rate:.2f}x of {args.against}")
            print(f"load {backend}: current / {args.against} = {loaded.rate / other.rate:.2f}")
            run.rows.append(other)
    try:
        exported = run.attempt(f"export {backend}", lambda: run_export(
            f"export {backend}", url, run.corpus, shlex.split(args.serve_args), run.work))
    except ExportUnavailable as why:
        print(f"export: not available in this build (kick-off answered {why})")
        return
    if exported:
        run.rows.extend(exported)
    if args.skip_import:
        return
    imported = run.attempt(f"$import {backend}", lambda: run_import(
        f"$import {backend}", run.database(backend, "import"), run.corpus,
        shlex.split(args.serve_args), run.work))
    if imported is not None:
        imported.notes.append(f"{imported.rate / loaded.rate:.2f} of hygeia load")
        run.rows.append(imported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL for scratch databases")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="write the corpus and databases into DIR, keep and reuse them")
    parser.add_argument("--load-args", default="", metavar="ARGS",
                        help="extra 'hygeia load' options, e.g. --load-args=--workers=2")
    parser.add_argument("--serve-args", default="", metavar="ARGS",
                        help="extra 'hygeia serve' options for the export server")
    parser.add_argument("--skip-import", action="store_true",
                        help="leave out the $import into a fresh server")
    parser.add_argument("--against", metavar="REV",
                        help="also load with this git revision's code and print the ratio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hygeia-bulk-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        corpus = build_corpus(args.data, work, args.patients)
        print(f"corpus: {args.patients} patients, {corpus.resources:,} resources, "
              f"{corpus.size / MB:.1f} MB NDJSON in {len(corpus.counts)} files")
        run = Run(args, work, corpus)
        try:
            execute(run, Path(tmp))
        finally:
            run.cleanup()
    if run.failures:
        sys.exit(f"FAILED: {', '.join(run.failures)}")


def execute(run: Run, scratch: Path) -> None:
    """Baselines, then load and export per backend, then the table."""
    against = source_at(run.args.against, scratch) if run.args.against else None
    copied = run.attempt("PG COPY baseline", lambda: copy_baseline(
        run.corpus, run.args.postgres, run.name("copy")))
    for backend in run.args.backends.split(","):
        run_backend(run, backend, against)
    exports = [row for row in run.rows if row.label.startswith("export")
               and not row.label.endswith("(to manifest)")]
    size = max((row.size for row in exports), default=run.corpus.size)
    file_copy = file_copy_baseline(run.corpus, size, run.work)
    for row in run.rows:
        if row.label.startswith("load"):
            row.baseline = copied
        elif row.label.startswith("export"):
            row.baseline = file_copy
    print_table([row for row in (copied, file_copy) if row is not None] + run.rows)


if __name__ == "__main__":
    main()
