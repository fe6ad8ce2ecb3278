"""The ``$export`` job: write each type's resources to NDJSON files, resumably.

Types are exported one after another, each in key order, a bounded number of
rows per database snapshot, written as they stream in.  About once a second
(checked every few thousand rows) the job flushes its open file and
checkpoints (type, last key, the open file's name, size and line count).  A
worker that takes over after a crash cuts the open file back to the
checkpointed size and goes on from the checkpointed key, so no line is lost or
written twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest, Issue, operation_outcome
from hygeia.fhir.shaping import mandatory_elements, shape
from hygeia.fhir.spec import patient_compartment
from hygeia.server.bulk.kickoff import (
    EXPORT,
    LATEST_PROVENANCE,
    RELEVANT_PROVENANCE,
    ExportRequest,
    parse_filter,
    transaction_time,
)
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.extensions import JobContext, JobFailed
from hygeia.server.jobs.status import file_url
from hygeia.store import ExportSlice, Job

# rows per query, each in its own snapshot: a long export never holds one snapshot (and
# the cleanup it blocks) for the whole of a huge type
SNAPSHOT_ROWS = 100_000
CHECK_ROWS = 2_000  # rows between two looks at the clock (is a checkpoint due?)
CHECKPOINT_SECONDS = 1.0
WRITE_BUFFER = 1 << 17  # bytes buffered per open file before a write() to the kernel


@dataclass
class OpenPart:
    """The output file being written: its name, bytes and lines so far."""

    type: str
    name: str
    size: int = 0
    count: int = 0


class PartWriter:
    """Appends NDJSON lines to ``Type-N.ndjson`` files, starting a new one at ``limit`` bytes."""

    def __init__(self, folder: Path, limit: int, part: OpenPart) -> None:
        self.folder = folder
        self.limit = limit
        self.part = part
        self.closed: list[OpenPart] = []
        # opened at the first line: most types of a system export have none
        self._handle: IO[bytes] | None = None

    def _open(self, part: OpenPart) -> IO[bytes]:
        """Open the part, cut back to its checkpointed size (a crash may have left more)."""
        path = self.folder / part.name
        if not path.exists():
            if part.size:
                raise JobFailed(f"The export file {part.name} is gone (expected {part.size} "
                                "bytes); start a new export.")
            path.touch()
        handle = path.open("r+b", buffering=WRITE_BUFFER)
        if handle.seek(0, os.SEEK_END) < part.size:
            handle.close()
            raise JobFailed(f"The export file {part.name} is shorter than its checkpoint; "
                            "start a new export.")
        handle.truncate(part.size)
        handle.seek(part.size)
        return handle

    def write(self, line: bytes) -> None:
        if self.part.size >= self.limit and self.part.count:
            self._next_part()
        if self._handle is None:
            self._handle = self._open(self.part)
        self._handle.write(line)
        self._handle.write(b"\n")
        self.part.size += len(line) + 1
        self.part.count += 1

    def _next_part(self) -> None:
        self._close_handle()
        self.closed.append(self.part)
        prefix, _, last = self.part.name.rpartition("-")
        number = int(last.split(".")[0]) + 1
        self.part = OpenPart(self.part.type, f"{prefix}-{number}.ndjson")

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def finish(self) -> list[OpenPart]:
        """Close the last part (dropped when empty); returns every part written."""
        self._close_handle()
        if self.part.count:
            self.closed.append(self.part)
        else:  # nothing now, but a run before a crash may have left lines
            (self.folder / self.part.name).unlink(missing_ok=True)
        return self.closed

    def _close_handle(self) -> None:
        if self._handle is None:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None


def part_name(kind: str, number: int) -> str:
    return f"{kind}-{number}.ndjson"


class ExportJob:
    """The ``export`` job kind (see the module docstring)."""

    name = EXPORT

    def run(self, context: JobContext) -> dict[str, Any]:
        export = ExportRequest.from_json(context.job.request)
        context.folder.mkdir(parents=True, exist_ok=True)
        progress = context.progress or self._start(context, export)
        export.types = progress["types"]
        for index in range(int(progress["type"]), len(export.types)):
            progress = self._export_type(context, export, index, progress)
        files = list(progress["files"])
        if export.associated:  # redone whole after a crash: its files start over
            files.extend(associated_provenance(context, export, files))
        return self._manifest(context, export, files)

    @staticmethod
    def _start(context: JobContext, export: ExportRequest) -> dict[str, Any]:
        """Fix the types to walk (those with data: most of a system export's 146 have none)
        in the first checkpoint, so a resumed job counts types the same way."""
        with context.host.reader() as session:
            types = session.types_present(export.types)
        progress = {"types": types, "type": 0, "after": 0, "part": None, "files": []}
        context.checkpoint(progress)
        return progress

    def _export_type(self, context: JobContext, export: ExportRequest, index: int,
                     progress: dict[str, Any]) -> dict[str, Any]:
        kind = export.types[index]
        part = OpenPart(**progress["part"]) if progress["part"] else OpenPart(
            kind, part_name(kind, 1))
        writer = PartWriter(context.folder, context.host.settings.jobs.export_file_bytes, part)
        files = list(progress["files"])
        shape = _shaper(export.elements, kind)
        part_of = _slice(context, export, kind)
        after: int | None = int(progress["after"])
        while after is not None:
            with context.host.reader() as session, closing(
                    session.export_rows(part_of, after, SNAPSHOT_ROWS)) as rows:
                seen = 0
                for after, content in rows:
                    if content is not None:
                        writer.write(shape(content))
                    seen += 1
                    if seen % CHECK_ROWS == 0 and self._due(context):
                        # mid-query: the checkpoint goes through a connection of its own
                        writer.flush()
                        context.checkpoint(_progress(export.types, index, after, writer,
                                                     files, kind))
            if seen < SNAPSHOT_ROWS:
                after = None
            else:
                context.keep_alive()
        files.extend({"type": p.type, "file": p.name, "count": p.count}
                     for p in writer.finish())
        done = {"types": export.types, "type": index + 1, "after": 0, "part": None,
                "files": files,
                "note": f"Exported {_total(files):,} resources ({index + 1} of "
                        f"{len(export.types)} types)"}
        # not after every type: a system export has 146, most of them empty; resuming
        # from an earlier checkpoint redoes the types since (their files start over)
        if self._due(context):
            context.checkpoint(done)
        return done

    @staticmethod
    def _due(context: JobContext) -> bool:
        return context.since_checkpoint() >= CHECKPOINT_SECONDS

    def _manifest(self, context: JobContext, export: ExportRequest,
                  files: list[dict[str, Any]]) -> dict[str, Any]:
        errors = []
        if export.warnings:  # one OperationOutcome per thing left out (export.html, error)
            lines = [orjson.dumps(_warning(item)) for item in export.warnings]
            (context.folder / "OperationOutcome-1.ndjson").write_bytes(
                b"".join(line + b"\n" for line in lines))
            errors.append({"type": "OperationOutcome", "file": "OperationOutcome-1.ndjson",
                           "count": len(lines)})
        return {"transactionTime": transaction_time(export), "request": export.request_url,
                "requiresAccessToken": False, "output": files, "error": errors}

    def completed(self, job: Job, request: FhirRequest) -> FhirResponse:
        """The manifest, with file names turned into URLs on the asking base."""
        assert job.result is not None
        manifest = dict(job.result)
        for key in ("output", "error"):
            manifest[key] = [{"type": item["type"], "url": file_url(request, job.id,
                                                                     item["file"]),
                              **({"count": item["count"]} if "count" in item else {})}
                             for item in manifest[key]]
        # the files are FHIR endpoints: with auth on, each download needs the bearer token
        manifest["requiresAccessToken"] = request.access is not None
        return FhirResponse(200, resource=manifest, media_type="application/json")


def _warning(item: list[str] | str) -> dict[str, Any]:
    """One thing the export left out, as an OperationOutcome naming the parameter
    (a job queued before the parameter was recorded has the text alone)."""
    text, expression = (item, None) if isinstance(item, str) else item
    return operation_outcome([Issue("informational", text, expression, severity="warning")])


def _progress(export_types: list[str], index: int, after: int, writer: PartWriter,
              files: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    closed = [{"type": p.type, "file": p.name, "count": p.count} for p in writer.closed]
    written = _total(files) + sum(p.count for p in writer.closed) + writer.part.count
    return {"types": export_types, "type": index, "after": after,
            "part": writer.part.__dict__.copy(),
            "files": files + closed, "note": f"Exported {written:,} resources (now {kind})"}


def _total(files: list[dict[str, Any]]) -> int:
    return sum(int(item["count"]) for item in files)


def _slice(context: JobContext, export: ExportRequest, kind: str) -> ExportSlice:
    registry = context.host.registry
    filters = tuple(parse_filter(kind, criteria, registry)
                    for criteria in export.filters.get(kind, []))
    compartment = None
    if export.level != "system":
        compartment = tuple(patient_compartment().get(kind, ()))
    patients = None if export.patients is None else tuple(export.patients)
    return ExportSlice(kind, export.until, export.since, compartment, patients, filters)


def associated_provenance(context: JobContext, export: ExportRequest,
                          files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``includeAssociatedData``: the Provenance whose ``target`` is an exported resource.

    ``RelevantProvenanceResources`` takes every such Provenance,
    ``LatestProvenanceResources`` only the most recent (``recorded``) of each exported
    resource.  The exported references are read back from the files written (so a
    resumed job sees them too) and held as a set: memory in proportion to the export.
    Provenance exported as a type already is not written twice.
    """
    exported = _exported_references(context, files)
    latest = LATEST_PROVENANCE in export.associated and \
        RELEVANT_PROVENANCE not in export.associated
    wanted = _latest_provenance(context, export, exported) if latest else None
    writer = PartWriter(context.folder, context.host.settings.jobs.export_file_bytes,
                        OpenPart("Provenance", "Provenance-associated-1.ndjson"))
    for content in _provenance(context, export):
        provenance = orjson.loads(content)
        if f"Provenance/{provenance.get('id')}" in exported:
            continue
        if (provenance.get("id") in wanted) if wanted is not None else \
                _targets(provenance, context.host.settings.base_url) & exported:
            writer.write(bytes(content))
    return [{"type": p.type, "file": p.name, "count": p.count} for p in writer.finish()]


def _exported_references(context: JobContext, files: list[dict[str, Any]]) -> set[str]:
    references: set[str] = set()
    for item in files:
        with (context.folder / item["file"]).open("rb") as lines:
            references.update(f"{item['type']}/{orjson.loads(line)['id']}" for line in lines)
    return references


def _latest_provenance(context: JobContext, export: ExportRequest,
                       exported: set[str]) -> set[str]:
    """Ids of the most recent Provenance of each exported resource."""
    newest: dict[str, tuple[int, str]] = {}  # target -> (recorded, Provenance id)
    base = context.host.settings.base_url
    for content in _provenance(context, export):
        provenance = orjson.loads(content)
        recorded = _instant(provenance.get("recorded"))
        for target in _targets(provenance, base) & exported:
            if target not in newest or newest[target][0] < recorded:
                newest[target] = (recorded, str(provenance.get("id")))
    return {id for _, id in newest.values()}


def _instant(value: Any) -> int:
    """An instant as microseconds (time zones compared correctly); 0 when unreadable."""
    try:
        return fhir_datetime_range(str(value), name="recorded")[0]
    except BadRequest:
        return 0


def _provenance(context: JobContext, export: ExportRequest) -> Iterator[bytes]:
    """Every Provenance current at the export's instant, a snapshot per batch of rows."""
    part = ExportSlice("Provenance", export.until)
    after: int | None = 0
    while after is not None:
        seen, last = 0, after
        with context.host.reader() as session, closing(
                session.export_rows(part, last, SNAPSHOT_ROWS)) as rows:
            for key, content in rows:
                seen, last = seen + 1, key
                if content is not None:
                    yield bytes(content)
        after = last if seen == SNAPSHOT_ROWS else None
        context.keep_alive()


def _targets(provenance: dict[str, Any], base_url: str | None) -> set[str]:
    """``Provenance.target`` as ``Type/id`` (absolute URLs on this server and
    ``_history`` versions reduced to the resource)."""
    found = set()
    for target in provenance.get("target") or []:
        reference = str((target or {}).get("reference") or "") if isinstance(
            target, dict) else ""
        if base_url and reference.startswith(base_url.rstrip("/") + "/"):
            reference = reference[len(base_url.rstrip("/")) + 1:]
        parts = reference.split("/")
        if len(parts) in (2, 4) and parts[0] and parts[1]:
            found.add(f"{parts[0]}/{parts[1]}")
    return found


def _shaper(elements: list[str], kind: str) -> Any:
    """Stored bytes as they are, or cut down to ``_elements`` the way a search shapes them
    (``fhir/shaping.py``: choice types expanded, tagged SUBSETTED)."""
    names = tuple(sorted({e.split(".", 1)[-1] for e in elements
                          if "." not in e or e.startswith(kind + ".")}))
    if not names:  # no element named for this type: it is exported whole
        return lambda content: content

    # the IG keeps mandatory elements ("SHOULD omit unlisted, non-mandatory elements")
    kept = tuple(sorted({*names, *mandatory_elements(kind)}))

    def shaped(content: bytes) -> bytes:
        return orjson.dumps(shape(orjson.loads(content), None, kept))

    return shaped
