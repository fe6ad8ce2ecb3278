"""WADO-RS (PS3.18 10.4): a study, series or instance as multipart/related
application/dicom, its metadata as DICOM JSON, or an instance rendered.

Transfer syntax (the ``transfer-syntax`` parameter of the Accept entry):

- ``*``, or the syntax an instance was stored in: the stored file, byte for byte
  (the dataset after the file meta group is exactly what the sender sent);
- none given: Explicit VR Little Endian as the standard's default, for instances
  stored uncompressed (Implicit VR and Big Endian are rewritten by pydicom); a
  compressed instance is sent as stored, and each part's Content-Type names the
  syntax it is in;
- Explicit VR Little Endian asked explicitly: as above, but a compressed
  instance makes the request 406 (this server does not decompress);
- any other syntax that is not the stored one: 406 naming the instance.

A study is streamed instance by instance, a file at a time in 1 MiB chunks.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hygeia.fhir.outcome import NotAcceptable, NotFound
from hygeia.imaging.dicomweb.access import Reach
from hygeia.imaging.dicomweb.dicomjson import file_metadata
from hygeia.imaging.dicomweb.multipart import (
    new_boundary,
    parse_media_type,
    related_content_type,
    related_parts,
)
from hygeia.imaging.dicomweb.render import render, rendered_type
from hygeia.imaging.dicomweb.routes import Route
from hygeia.server.extensions import MountRequest, MountResponse

if TYPE_CHECKING:
    from hygeia.imaging.archive import Archive, InstanceRecord

DICOM_JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.2"})
PAGE = 1000  # instances read from the index at a time
MAX_INSTANCES = 100_000  # instances one retrieval serves at most
CHUNK = 1024 * 1024
_ENTRIES = re.compile(r'(?:[^,"]|"[^"]*")+')


def instances(archive: Archive, route: Route, reach: Reach) -> list[InstanceRecord]:
    """The instances a WADO-RS path names (404 when none, or not within reach)."""
    assert route.study is not None
    if not reach.allows(route.study):
        raise _not_found(route)
    filters = {"StudyInstanceUID": route.study}
    if route.series is not None:
        filters["SeriesInstanceUID"] = route.series
    if route.instance is not None:
        filters["SOPInstanceUID"] = route.instance
    found: list[InstanceRecord] = []
    while len(found) < MAX_INSTANCES:
        page = archive.find_instances(filters, limit=PAGE, offset=len(found))
        found.extend(page)
        if len(page) < PAGE:
            break
    if not found:
        raise _not_found(route)
    return found


def retrieve(archive: Archive, request: MountRequest, route: Route, reach: Reach
             ) -> MountResponse:
    """The instances as multipart/related application/dicom (module docstring)."""
    found = instances(archive, route, reach)
    syntax = requested_syntax(request.headers.get("accept"))
    plans = [(record, _sending(record, syntax)) for record in found]
    for record, _ in plans:  # before the answer starts: a missing file is a 404, not a cut
        _stored_file(archive, record)
    boundary = new_boundary()
    common = {plan for _, plan in plans}
    content_type = related_content_type("application/dicom", boundary,
                                        next(iter(common)) if len(common) == 1 else None)
    parts = ((f"application/dicom; transfer-syntax={plan}", _file_chunks(archive, record, plan))
             for record, plan in plans)
    return MountResponse(200, related_parts(parts, boundary), content_type)


def metadata(archive: Archive, request: MountRequest, route: Route, reach: Reach
             ) -> MountResponse:
    """The DICOM JSON of each instance (bulk data as BulkDataURI)."""
    found = instances(archive, route, reach)
    base = f"{request.root}/dicomweb"
    answer: list[dict[str, Any]] = []
    for record in found:
        url = (f"{base}/studies/{record.study_uid}/series/{record.series_uid}"
               f"/instances/{record.sop_uid}")
        answer.append(file_metadata(_stored_file(archive, record), url))
    return MountResponse(200, orjson.dumps(answer), DICOM_JSON)


def rendered(archive: Archive, request: MountRequest, route: Route, reach: Reach
             ) -> MountResponse:
    """One single-frame instance as image/jpeg or image/png (by Accept)."""
    media_type = rendered_type(request.headers.get("accept"))
    record = instances(archive, route, reach)[0]
    return MountResponse(200, render(_stored_file(archive, record), media_type), media_type)


def _stored_file(archive: Archive, record: InstanceRecord) -> Path:
    """The instance's file, or a 404 when the storage lost it (removed by hand)."""
    path = archive.path(record)
    if not path.exists():
        raise NotFound(f"The file of instance {record.sop_uid} is missing from the "
                       "server's DICOM storage.", expression="instance")
    return path


def requested_syntax(accept: str | None) -> str | None:
    """The transfer syntax the Accept header asks for: a UID, ``*``, or None (the
    default); 406 when it accepts no multipart/related application/dicom."""
    if not accept:
        return None
    for entry in _ENTRIES.findall(accept):
        media = parse_media_type(entry.strip())
        inner = media.inner
        if media.type in ("*/*", "multipart/*") or (
                media.type == "multipart/related" and inner in ("", "application/dicom")):
            return media.params.get("transfer-syntax") or None
    raise NotAcceptable('WADO-RS answers multipart/related; type="application/dicom" here '
                        f"(the Accept header asks for {accept[:120]}).", expression="Accept")


def _sending(record: InstanceRecord, syntax: str | None) -> str:
    """The transfer syntax ``record`` is sent in, or a 406."""
    stored = record.transfer_syntax
    if syntax in ("*", stored):
        return stored
    if syntax is None:
        return EXPLICIT_LE if stored in UNCOMPRESSED else stored
    if syntax == EXPLICIT_LE and stored in UNCOMPRESSED:
        return EXPLICIT_LE
    raise NotAcceptable(f"The instance {record.sop_uid} is stored in transfer syntax {stored} "
                        f"and this server does not convert it to {syntax[:64]}; ask for "
                        "transfer-syntax=* to have it as stored.", expression="Accept")


def _file_chunks(archive: Archive, record: InstanceRecord, syntax: str) -> Iterator[bytes]:
    if syntax == record.transfer_syntax:
        with archive.open(record) as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
        return
    yield _transcoded(archive, record, syntax)


def _transcoded(archive: Archive, record: InstanceRecord, syntax: str) -> bytes:
    from pydicom import dcmread
    from pydicom.uid import UID

    dataset = dcmread(archive.path(record))
    dataset.file_meta.TransferSyntaxUID = UID(syntax)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _not_found(route: Route) -> NotFound:
    what = {"study": f"study {route.study}",
            "series": f"series {route.series} of study {route.study}",
            "instance": f"instance {route.instance} of series {route.series}"}[route.level]
    return NotFound(f"This server holds no {what[:200]} that you may read.", expression="path")
