"""``hygeia load``: put Bundles and NDJSON files into the database, with progress."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hygeia.cli.sources import expand_paths, is_ndjson, read_json, read_ndjson
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.validation import validate
from hygeia.server import FhirRequest, FhirService

NDJSON_CHUNK = 500


@dataclass
class LoadReport:
    resources: int = 0
    files: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.resources / self.seconds if self.seconds else 0.0
        return (f"Loaded {self.resources} resources from {self.files} files in "
                f"{self.seconds:.1f} s ({rate:,.0f} resources/s); {len(self.errors)} errors.")


def load_paths(service: FhirService, paths: list[str], console: Console | None = None,
               quiet: bool = False) -> LoadReport:
    """Load every file under ``paths``; one bad file or line never stops the rest."""
    console = console or Console(stderr=True)
    files = expand_paths(paths)
    report = LoadReport()
    started = time.perf_counter()
    columns = (TextColumn("[bold]loading"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[resources]} resources"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task("load", total=len(files), resources=0)
        for path in files:
            _load_file(service, path, report)
            report.files += 1
            progress.update(task, advance=1, resources=report.resources)
    report.seconds = time.perf_counter() - started
    return report


def _load_file(service: FhirService, path: Path, report: LoadReport) -> None:
    try:
        if is_ndjson(path):
            _load_ndjson(service, path, report)
        else:
            _load_json(service, path, report)
    except FhirError as error:
        report.errors.extend(f"{path}: {_describe(issue)}" for issue in error.outcome()["issue"])
    except (OSError, ValueError) as error:
        report.errors.append(f"{path}: {error}")


def _describe(issue: dict[str, Any]) -> str:
    where = issue.get("expression", [""])[0]
    return f"{where}: {issue['diagnostics']}" if where else issue["diagnostics"]


def _load_json(service: FhirService, path: Path, report: LoadReport) -> None:
    content = read_json(path)
    if isinstance(content, dict) and content.get("resourceType") == "Bundle" and \
            content.get("type") in ("transaction", "batch"):
        response = service.handle(FhirRequest("POST", "", body=content))
        entries = (response.resource or {}).get("entry", [])
        for index, entry in enumerate(entries):
            status = entry.get("response", {}).get("status", "")
            if status.startswith("2"):
                report.resources += 1
            else:
                report.errors.append(f"{path}: entry {index}: status {status}")
        return
    resources = _bundle_resources(content)
    _store_chunk(service, path, [(0, resource) for resource in resources], report)


def _bundle_resources(content: Any) -> list[Any]:
    if isinstance(content, dict) and content.get("resourceType") == "Bundle":
        return [entry.get("resource") for entry in content.get("entry", [])
                if isinstance(entry, dict) and entry.get("resource") is not None]
    return [content]


def _load_ndjson(service: FhirService, path: Path, report: LoadReport) -> None:
    chunk: list[tuple[int, Any]] = []
    for number, resource in read_ndjson(path):
        if isinstance(resource, Exception):
            report.errors.append(f"{path}:{number}: not JSON: {resource}")
            continue
        chunk.append((number, resource))
        if len(chunk) >= NDJSON_CHUNK:
            _store_chunk(service, path, chunk, report)
            chunk = []
    if chunk:
        _store_chunk(service, path, chunk, report)


def _store_chunk(service: FhirService, path: Path, chunk: list[tuple[int, Any]],
                 report: LoadReport) -> None:
    """Validate each resource (reporting bad ones by line), then store the rest atomically."""
    entries = []
    for number, resource in chunk:
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        issues = validate(resource, resource_type if isinstance(resource_type, str) else None)
        if issues:
            where = f"{path}:{number}" if number else str(path)
            report.errors.extend(f"{where}: {issue.expression or ''}: {issue.diagnostics}"
                                 for issue in issues[:5])
            continue
        entries.append(_entry_for(resource))
    if not entries:
        return
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    service.handle(FhirRequest("POST", "", body=bundle))
    report.resources += len(entries)


def _entry_for(resource: dict[str, Any]) -> dict[str, Any]:
    """Resources with an id are PUT (loading twice gives new versions, not duplicates)."""
    resource_type = resource["resourceType"]
    if resource.get("id"):
        request = {"method": "PUT", "url": f"{resource_type}/{resource['id']}"}
    else:
        request = {"method": "POST", "url": resource_type}
    return {"resource": resource, "request": request}
