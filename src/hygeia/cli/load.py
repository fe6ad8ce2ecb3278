"""``hygeia load``: put NDJSON files and Bundles into the database, with progress.

NDJSON files (``.ndjson``, ``.ndjson.gz``) go through the bulk loader
(:mod:`hygeia.server.loading.loader`): parsed, validated and indexed in worker
processes and stored in large batches.  Transaction and batch Bundles keep the
transaction path (``urn:uuid:`` references resolved, all-or-nothing per
Bundle); any other JSON file is validated and stored resource by resource.

Every transaction that stores part of a file also records in the load journal
how far into the file it got (:mod:`hygeia.server.loading.journal`), so running
the same command again after it was killed stores exactly what is missing: files
loaded completely are skipped, a file loaded in part resumes where its
committed part ends.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hygeia.cli.sources import expand_paths, is_ndjson, open_text, read_json
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.validation import validate
from hygeia.server import FhirRequest, FhirService
from hygeia.server.loading.journal import Mark, file_key, find, record_alone, recording
from hygeia.server.loading.loader import Loader, LoadError, LoadReport
from hygeia.server.loading.prepare import describe_issues

CHUNK = 500  # resources per transaction for plain JSON files


class _Tally:
    """The whole command's report: the Loader's (NDJSON) plus what Bundles stored."""

    def __init__(self) -> None:
        self.other = LoadReport()  # Bundles and plain JSON files
        self.loaded = 0  # resources the Loader has stored so far
        self.seen: set[str] = set()  # the files' journal keys: the same content loads once

    @property
    def resources(self) -> int:
        return self.other.resources + self.loaded

    def error(self, source: Path, message: str) -> None:
        self.other.errors += 1
        self.other.first_errors.append(LoadError(str(source), 0, message))


def summary(report: LoadReport, files: int) -> str:
    """The command's last line: what was stored, how fast, how many errors."""
    rate = report.resources / report.seconds if report.seconds else 0.0
    skipped = f" ({report.skipped} loaded before, skipped)" if report.skipped else ""
    return (f"Loaded {report.resources} resources from {files} file{'s' * (files != 1)}"
            f"{skipped} in {report.seconds:.1f} s ({rate:,.0f} resources/s); "
            f"{report.errors} errors.")


# below this much NDJSON, starting the worker processes (about 2 s on two cores) costs
# more than they save; a gzipped file counts as ten times its size
SMALL_NDJSON_BYTES = 1 << 20


def worker_count(files: list[Path], requested: int | None) -> int:
    """The worker processes for loading ``files``: ``requested`` when given, else one
    per core, and none when there is no NDJSON or less than ``SMALL_NDJSON_BYTES``."""
    ndjson = [path for path in files if is_ndjson(path)]
    if not ndjson:
        return 0
    if requested is not None:
        return requested
    size = sum(path.stat().st_size * (10 if path.name.endswith(".gz") else 1)
               for path in ndjson)
    return 0 if size < SMALL_NDJSON_BYTES else os.cpu_count() or 1


def load_paths(service: FhirService, paths: list[str], console: Console | None = None,
               quiet: bool = False, *, workers: int | None = 0, upsert: bool = False,
               reload: bool = False) -> tuple[LoadReport, int]:
    """Load every file under ``paths``; one bad file or line never stops the rest.

    Files the load journal records as loaded completely are skipped, and files
    loaded in part resume where the committed part ends; ``reload`` loads every
    file from its start regardless.  ``workers=None`` chooses (:func:`worker_count`).
    Returns the report and the number of files.
    """
    console = console or Console(stderr=True)
    files = expand_paths(paths)
    tally = _Tally()
    started = time.perf_counter()
    columns = (TextColumn("[bold]loading"), BarColumn(), MofNCompleteColumn(),
               TextColumn("files  {task.fields[resources]:,} resources  "
                          "{task.fields[rate]:,.0f} resources/s"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task("load", total=len(files), resources=0, rate=0.0)

        def show(loaded: int | None = None) -> None:
            if loaded is not None:
                tally.loaded = loaded
            elapsed = time.perf_counter() - started
            progress.update(task, resources=tally.resources,
                            rate=tally.resources / elapsed if elapsed else 0.0)

        with Loader(service, workers=worker_count(files, workers),
                    upsert=upsert, on_progress=show, bulk=True) as loader:
            for path in files:
                _load_file(service, loader, path, tally, reload)
                progress.update(task, advance=1)
                show()
        show(loader.report.resources)
    return _merged(loader.report, tally.other, time.perf_counter() - started), len(files)


def _merged(loaded: LoadReport, other: LoadReport, seconds: float) -> LoadReport:
    report = LoadReport(resources=loaded.resources + other.resources,
                        by_type=dict(loaded.by_type), errors=loaded.errors + other.errors,
                        first_errors=[*other.first_errors, *loaded.first_errors],
                        seconds=seconds, skipped=other.skipped)
    for resource_type, count in other.by_type.items():
        report.by_type[resource_type] = report.by_type.get(resource_type, 0) + count
    return report


def _load_file(service: FhirService, loader: Loader, path: Path, tally: _Tally,
               reload: bool) -> None:
    try:
        mark = _start(service, path, tally, reload)
        if mark is None:
            tally.other.skipped += 1
            return
        if is_ndjson(path):
            with open_text(path) as handle:
                loader.load_lines(str(path), handle, mark)
        else:
            _load_json(service, path, tally, mark)
    except FhirError as error:
        for issue in error.outcome()["issue"]:
            tally.error(path, _describe(issue))
    except (OSError, ValueError) as error:
        tally.error(path, str(error))


def _start(service: FhirService, path: Path, tally: _Tally, reload: bool) -> Mark | None:
    """Where to start ``path`` (its journal mark), or None to skip it: the journal says
    it was loaded completely, or a file of the same content was met earlier in this run."""
    source = file_key(path)
    if source in tally.seen:
        return None
    tally.seen.add(source)
    found = None if reload else find(service.repository, source, str(path))
    if found is not None and found.complete:
        return None
    return found or Mark(source, str(path), 0, False)


def _describe(issue: dict[str, Any]) -> str:
    where = issue.get("expression", [""])[0]
    return f"{where}: {issue['diagnostics']}" if where else issue["diagnostics"]


def _load_json(service: FhirService, path: Path, tally: _Tally, mark: Mark) -> None:
    content = read_json(path)
    if isinstance(content, dict) and content.get("resourceType") == "Bundle":
        if content.get("type") == "transaction":
            _load_transaction(service, path, content, tally, mark)
            return
        if content.get("type") == "batch":
            _load_batch(service, path, content, tally, mark)
            return
    resources = _bundle_resources(content)
    for start in range(mark.progress, len(resources), CHUNK):
        end = min(start + CHUNK, len(resources))
        _store_chunk(service, path, resources[start:end], tally,
                     Mark(mark.source, mark.path, end, end == len(resources)))


def _load_transaction(service: FhirService, path: Path, bundle: dict[str, Any], tally: _Tally,
                      mark: Mark) -> None:
    """One transaction: the Bundle and its journal mark commit together, or neither does
    (a Bundle that fails is tried again by a rerun)."""
    entries = bundle.get("entry")
    done = Mark(mark.source, mark.path, len(entries) if isinstance(entries, list) else 0, True)
    with recording(service, done):
        response = service.handle(FhirRequest("POST", "", body=bundle))
    _tally_entries(path, bundle, response.resource, tally, offset=0)


def _load_batch(service: FhirService, path: Path, bundle: dict[str, Any], tally: _Tally,
                mark: Mark) -> None:
    """Entry by entry (a batch's entries are independent), each entry's write and the
    journal's count of entries done committing together; a rerun resumes after the last
    entry stored."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):  # the batch path explains what is wrong
        service.handle(FhirRequest("POST", "", body=bundle))
        return
    for index in range(mark.progress, len(entries)):
        one = {"resourceType": "Bundle", "type": "batch", "entry": [entries[index]]}
        with recording(service, Mark(mark.source, mark.path, index + 1,
                                     index + 1 == len(entries))):
            response = service.handle(FhirRequest("POST", "", body=one))
        _tally_entries(path, one, response.resource, tally, offset=index)


def _tally_entries(path: Path, bundle: dict[str, Any], response: Any, tally: _Tally,
                   offset: int) -> None:
    """Count what a transaction- or batch-response says was stored; report the rest."""
    for index, entry in enumerate((response or {}).get("entry", [])):
        status = entry.get("response", {}).get("status", "")
        if status.startswith("2"):
            kind = bundle["entry"][index].get("resource", {}).get("resourceType", "?")
            tally.other.stored(kind)
        else:
            tally.error(path, f"entry {offset + index}: status {status}")


def _bundle_resources(content: Any) -> list[Any]:
    if isinstance(content, dict) and content.get("resourceType") == "Bundle":
        return [entry.get("resource") for entry in content.get("entry", [])
                if isinstance(entry, dict) and entry.get("resource") is not None]
    return [content]


def _store_chunk(service: FhirService, path: Path, chunk: list[Any], tally: _Tally,
                 mark: Mark) -> None:
    """Validate each resource (reporting bad ones), then store the rest atomically, with
    the journal's ``mark``."""
    entries = []
    for resource in chunk:
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        issues = validate(resource, resource_type if isinstance(resource_type, str) else None)
        if issues:
            tally.error(path, describe_issues(issues))
            continue
        entries.append(_entry_for(resource))
    if not entries:  # nothing to store; the errors need not be reported again
        record_alone(service.repository, mark)
        return
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    with recording(service, mark):
        service.handle(FhirRequest("POST", "", body=bundle))
    for entry in entries:
        tally.other.stored(entry["resource"]["resourceType"])


def _entry_for(resource: dict[str, Any]) -> dict[str, Any]:
    """Resources with an id are PUT (loading twice gives new versions, not duplicates)."""
    resource_type = resource["resourceType"]
    if resource.get("id"):
        request = {"method": "PUT", "url": f"{resource_type}/{resource['id']}"}
    else:
        request = {"method": "POST", "url": resource_type}
    return {"resource": resource, "request": request}
