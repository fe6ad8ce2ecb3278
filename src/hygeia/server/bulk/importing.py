"""``$import``: load NDJSON files as a background job, with per-line errors.

The request is a Parameters resource in the style the leading servers use::

    {"resourceType": "Parameters", "parameter": [
      {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
      {"name": "input", "part": [
        {"name": "type", "valueCode": "Patient"},
        {"name": "url", "valueUri": "Patient.ndjson"}]}]}

An input ``url`` names a file in the server's import folder (``FILES/import``,
a relative path that may not leave it) or a ``Binary/ID`` holding NDJSON
that was uploaded first.  Remote URLs are refused: fetching what a request
names would let any client make the server reach into its own network.

Every input is loaded with the bulk loader (:mod:`hygeia.server.loading.loader`) in
upsert mode, so a job resumed after a crash re-reads the input it was in and
writes new versions of what it had stored, never duplicates.  Bad lines are
reported in the ``error`` files (one OperationOutcome per line, naming the
input and line) and never stop the rest.
"""

from __future__ import annotations

import base64
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import orjson

from hygeia.fhir.datetime import format_instant, now_us
from hygeia.fhir.outcome import BadRequest, Issue, information, operation_outcome
from hygeia.fhir.spec import is_resource_type
from hygeia.server.auth.operations import client_of
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.extensions import JobContext, JobFailed
from hygeia.server.jobs.status import file_url, status_url
from hygeia.server.loading.loader import Loader, LoadError
from hygeia.server.rest.router import SERVER_WRITTEN_TYPES
from hygeia.store import Job

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

IMPORT = "import"
FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
# parse/validate/index processes per import: one, since the server keeps serving meanwhile
IMPORT_WORKERS = 1


def kick_off_import(host: Host, request: FhirRequest) -> FhirResponse:
    if not request.prefer_async:
        raise BadRequest("$import runs asynchronously: send the header "
                         "'Prefer: respond-async'.", expression="Prefer")
    inputs = _inputs(request.body)
    for item in inputs:  # refuse a bad input now, not after the job has started
        _open_input(host, item["url"]).close()
    job = host.jobs.submit(IMPORT, {"inputs": inputs, "time": now_us(),
                                       "client": client_of(request.access),
                                       "request": f"{request.base_url}$import"}, now_us())
    host.wake_jobs()
    location = status_url(request, job.id)
    return FhirResponse(202, resource=information(f"Import started; poll {location}."),
                        headers={"Content-Location": location})


def _inputs(body: Any) -> list[dict[str, str]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("$import takes a Parameters resource.", expression="resourceType")
    inputs = []
    for index, part in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{index}]"
        name = part.get("name") if isinstance(part, dict) else None
        if name == "inputFormat":
            value = part.get("valueCode") or part.get("valueString")
            if value not in FORMATS:
                raise BadRequest(f"inputFormat '{value}' is not supported; use "
                                 "application/fhir+ndjson.", expression=where)
        elif name == "input":
            inputs.append(_input(part, where))
    if not inputs:
        raise BadRequest("$import needs at least one input (with a url).",
                         expression="Parameters.parameter")
    return inputs


def _input(part: dict[str, Any], where: str) -> dict[str, str]:
    values = {p.get("name"): next((v for k, v in p.items() if k.startswith("value")), None)
              for p in part.get("part") or [] if isinstance(p, dict)}
    url = values.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequest("Each input needs a url.", expression=f"{where}.part")
    kind = values.get("type")
    if kind is not None and not is_resource_type(str(kind)):
        raise BadRequest(f"Input type '{kind}' is not a FHIR R4 resource type.",
                         expression=f"{where}.part")
    return {"url": url, "type": str(kind or "")}


def _open_input(host: Host, url: str) -> IO[bytes]:
    """A readable binary stream of the input's NDJSON (gunzipped when it is .gz)."""
    if url.startswith("Binary/"):
        return io.BytesIO(_binary_data(host, url))
    if "://" in url:
        raise BadRequest(f"Input '{url}': only files in the server's import folder or "
                         "Binary/ID references can be imported.", expression="url")
    root = (host.files.root / "import").resolve()
    path = (root / url).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise BadRequest(f"Input '{url}' is not a file in the server's import folder "
                         f"({root}).", expression="url")
    handle: IO[bytes] = path.open("rb")
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=handle))
    return handle


def _binary_data(host: Host, url: str) -> bytes:
    id = url.removeprefix("Binary/")
    with host.reader() as session:
        stored = session.current("Binary", id)
    if stored is None or stored.deleted or stored.content is None:
        raise BadRequest(f"Input '{url}' does not exist.", expression="url")
    data = orjson.loads(stored.content).get("data")
    if not data:
        raise BadRequest(f"Input '{url}' holds no data.", expression="url")
    return base64.b64decode(data)


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    with stream:
        yield from stream


class ImportJob:
    """The ``import`` job kind: one input after another, checkpointed between inputs."""

    name = IMPORT

    def run(self, context: JobContext) -> dict[str, Any]:
        inputs: list[dict[str, str]] = context.job.request["inputs"]
        context.folder.mkdir(parents=True, exist_ok=True)
        progress = context.progress or {"input": 0, "results": []}
        for index in range(int(progress["input"]), len(inputs)):
            result = self._load_input(context, index, inputs[index])
            progress = {"input": index + 1, "results": [*progress["results"], result],
                        "note": f"Imported {index + 1} of {len(inputs)} inputs"}
            context.checkpoint(progress)
        request = context.job.request
        return {"transactionTime": format_instant(request["time"]),
                "request": request["request"], "requiresAccessToken": False,
                "results": progress["results"]}

    def _load_input(self, context: JobContext, index: int, item: dict[str, str]
                    ) -> dict[str, Any]:
        errors_name = f"errors-{index + 1}.ndjson"
        with (context.folder / errors_name).open("wb") as errors:
            def on_error(error: LoadError) -> None:
                errors.write(orjson.dumps(_outcome(error)) + b"\n")

            try:
                stream = _open_input(context.host, item["url"])
            except BadRequest as error:
                raise JobFailed(error.issues[0].diagnostics) from None
            loader = Loader(context.host, workers=IMPORT_WORKERS, upsert=True,
                            on_error=on_error, on_progress=lambda _: context.keep_alive(),
                            refused_types=SERVER_WRITTEN_TYPES)
            with loader:  # a stop (cancellation) aborts it; what committed stays
                loader.load_lines(item["url"], _lines(stream))
            report = loader.report
        if report.errors == 0:
            (context.folder / errors_name).unlink()
        return {"url": item["url"], "type": item["type"], "count": report.resources,
                "errors": report.errors, **({"file": errors_name} if report.errors else {})}

    def completed(self, job: Job, request: FhirRequest) -> FhirResponse:
        """A manifest: per input what was stored, and the files of per-line errors."""
        result = job.result or {}
        outcome_lines = [{"type": "OperationOutcome", "url": file_url(request, job.id, r["file"]),
                          "count": r["errors"], "inputUrl": r["url"]}
                         for r in result.get("results", []) if r.get("file")]
        manifest = {key: result[key] for key in ("transactionTime", "request",
                                                 "requiresAccessToken")}
        manifest["output"] = [{"type": r["type"] or "Resource", "inputUrl": r["url"],
                               "count": r["count"]} for r in result.get("results", [])]
        manifest["error"] = outcome_lines
        return FhirResponse(200, resource=manifest, media_type="application/json")


def _outcome(error: LoadError) -> dict[str, Any]:
    where = f"{error.source} line {error.line}" if error.line else error.source
    return operation_outcome([Issue("processing", f"{where}: {error.message}")])


def import_folder(host: Host) -> Path:
    """Where files to import by relative url go (created on first use)."""
    folder = host.files.root / "import"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
