"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies[/{study}]`` stores DICOM instances.

The body is ``multipart/related; type="application/dicom"``, one Part 10 file per
part. The front end has spooled it to a temporary file (``Mount.spools_body``);
each part is copied from there into the archive's incoming folder, checked
(:func:`hygeia.imaging.parsing.parse`) and stored content-addressed, so no
instance and no body is ever held whole in memory. Parts are stored
:data:`BATCH` at a time (:meth:`~hygeia.imaging.archive.Archive.store_incoming_many`):
each file fsynced, then their directories, then one index transaction for them
all, before any is reported stored.

The answer is a DICOM JSON dataset: ``ReferencedSOPSequence`` (0008,1199) lists
what was stored (again, for a SOP Instance UID already held: storing is
idempotent), ``FailedSOPSequence`` (0008,1198) what was not, each with a
``FailureReason`` (0008,1197) and, in Error Comment (0000,0902), the reason in
words (its first 64 characters; the whole sentence of each failed part is in a
``Warning: 299`` header). Status 200 when every part was stored, 202 when some were, 409 when none
was. A broken body (not multipart/related, no boundary, truncated framing) is a
400 or 415 OperationOutcome and stores nothing.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from hygeia.fhir.outcome import BadRequest
from hygeia.imaging.dicomweb.dicomjson import element, failure_item, sequence, stored_item
from hygeia.imaging.dicomweb.multipart import Part, related_boundary, split_parts
from hygeia.server.extensions import MountRequest, MountResponse

if TYPE_CHECKING:
    from hygeia.imaging.archive import Archive, Stored

DICOM_JSON = "application/dicom+json"
# FailureReason codes (PS3.18 Table I.2-1 and PS3.4 Annex B)
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
STUDY_MISMATCH = 0xA901  # the instance's Study Instance UID is not the one in the path
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
_COPY_CHUNK = 1024 * 1024
# parts stored together: fsynced each, their directories fsynced and their rows indexed
# once per batch; it bounds what a failing commit makes index again one by one
BATCH = 64
_HEADER_BYTES = 256 * 1024  # of a refused part, read for its UIDs


@dataclass(slots=True)
class StowResult:
    """What one STOW-RS request stored and refused."""

    stored: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        if not self.failed:
            return 200
        return 202 if self.stored else 409


def stow(archive: Archive, request: MountRequest, study: str | None) -> StowResult:
    """Store the instances of a STOW-RS request (module docstring)."""
    boundary = related_boundary(request.headers.get("content-type"), "application/dicom")
    body = request.body_file
    if body is None or request.body_size == 0:
        raise BadRequest("The body is empty; send one or more DICOM instances as parts.",
                         expression="body")
    parts = split_parts(body, request.body_size, boundary)
    result = StowResult()
    batch: list[tuple[Part, Path]] = []
    for part in parts:
        path = _take_part(archive, body, part, study, result)
        if path is not None:
            batch.append((part, path))
        if len(batch) >= BATCH:
            _store_batch(archive, body, batch, request.root, result)
            batch = []
    _store_batch(archive, body, batch, request.root, result)
    if result.studies:
        archive.sender_done(result.studies)
    return result


def answer(result: StowResult, root: str) -> MountResponse:
    """The DICOM JSON answer of a STOW-RS request."""
    dataset: dict[str, Any] = {}
    if len(set(result.studies)) == 1:
        dataset["00081190"] = element("00081190", f"{root}/dicomweb/studies/{result.studies[0]}")
    if result.failed:
        dataset["00081198"] = sequence(result.failed)
    dataset["00081199"] = sequence(result.stored)
    headers = {"Warning": ", ".join(_warning(reason) for reason in result.reasons)} \
        if result.reasons else {}
    return MountResponse(result.status, orjson.dumps(dataset), DICOM_JSON, headers)


def _warning(sentence: str) -> str:
    """A Warning header value (code 299, as DICOMweb uses it) with the reason in full."""
    text = sentence.replace("\\", "/").replace('"', "'")[:500]
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return f'299 hygeia "{printable}"'


def _take_part(archive: Archive, body: BinaryIO, part: Part, study: str | None,
               result: StowResult) -> Path | None:
    """Copy a part into the archive's incoming folder; its path, or None when it was
    refused already (its failure recorded in ``result``)."""
    # a part without a Content-Type is taken to be of the body's type (application/dicom)
    if "content-type" in part.headers and part.content_type != "application/dicom":
        _fail(result, part, None, None, CANNOT_UNDERSTAND,
              f"the part is {part.content_type}, not application/dicom")
        return None
    path = archive.incoming_path()
    try:
        _copy(body, part.offset, part.length, path)
        # the study is read before storing only when the path names one (a header read
        # costs a few milliseconds); a refused part's UIDs are read from the body after
        uids = _uids(path) if study is not None else (None, None, None)
    except OSError as error:
        path.unlink(missing_ok=True)
        _fail_io(result, part, error)
        return None
    if study is not None and uids[2] and uids[2] != study:
        path.unlink(missing_ok=True)
        _fail(result, part, uids[0], uids[1], STUDY_MISMATCH,
              f"its Study Instance UID is {uids[2]}, not {study} as the path says")
        return None
    return path


def _store_batch(archive: Archive, body: BinaryIO, batch: list[tuple[Part, Path]],
                 root: str, result: StowResult) -> None:
    """Store the parts copied by :func:`_take_part` together (one index commit for all,
    :meth:`Archive.store_incoming_many`); each part's outcome in ``result``, in order."""
    from hygeia.imaging.archive import Malformed

    if not batch:
        return
    outcomes = archive.store_incoming_many([path for _, path in batch])
    for (part, _), outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, Malformed):
            reason = TRANSFER_SYNTAX_NOT_SUPPORTED if "transfer syntax" in \
                str(outcome).lower() else CANNOT_UNDERSTAND
            sop_class, sop_instance, _ = _part_uids(body, part)
            _fail(result, part, sop_class, sop_instance, reason, str(outcome))
        elif isinstance(outcome, OSError):
            _fail_io(result, part, outcome)
        else:
            _stored(result, outcome, root)


def _fail_io(result: StowResult, part: Part, error: OSError) -> None:
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    _fail(result, part, None, None, OUT_OF_RESOURCES if full else PROCESSING_FAILURE,
          f"it could not be written ({error.strerror or error})")


def _stored(result: StowResult, stored: Stored, root: str) -> None:
    url = (f"{root}/dicomweb/studies/{stored.study_uid}/series/{stored.series_uid}"
           f"/instances/{stored.sop_instance}")
    result.stored.append(stored_item(stored.sop_class, stored.sop_instance, url))
    if stored.study_uid not in result.studies:
        result.studies.append(stored.study_uid)


def _fail(result: StowResult, part: Part, sop_class: str | None, sop_instance: str | None,
          reason: int, why: str) -> None:
    sentence = f"Part {part.number} was not stored: {why}"
    # Error Comment is an LO (64 characters): the sentence in full is in the Warning header
    result.failed.append(failure_item(sop_class, sop_instance, reason,
                                      f"part {part.number}: {why}"))
    result.reasons.append(sentence)


def _copy(body: BinaryIO, offset: int, length: int, target: Path) -> None:
    """Copy ``length`` bytes at ``offset`` of the spooled body to ``target`` (in the kernel
    where it can: copy_file_range)."""
    source = body.fileno()
    with open(target, "wb") as out:
        destination = out.fileno()
        done = 0
        try:
            while done < length:
                copied = os.copy_file_range(source, destination, length - done,
                                            offset + done)
                if copied == 0:
                    break
                done += copied
        except OSError:  # a file system or kernel without it: read and write
            out.seek(done)
            for chunk in _chunks(source, offset + done, length - done):
                out.write(chunk)
                done += len(chunk)
    if done != length:
        raise OSError(errno.EIO, "the spooled body ended early")


def _chunks(descriptor: int, offset: int, length: int) -> Iterator[bytes]:
    while length > 0:
        chunk = os.pread(descriptor, min(length, _COPY_CHUNK), offset)
        if not chunk:
            return
        offset += len(chunk)
        length -= len(chunk)
        yield chunk


def _part_uids(body: BinaryIO, part: Part) -> tuple[str | None, str | None, str | None]:
    """The UIDs of a refused part, from its first :data:`_HEADER_BYTES` in the body."""
    head = os.pread(body.fileno(), min(part.length, _HEADER_BYTES), part.offset)
    return _uids(io.BytesIO(head))


def _uids(source: Path | BinaryIO) -> tuple[str | None, str | None, str | None]:
    """(SOP Class, SOP Instance, Study Instance UID) read from the file's header, or
    Nones where it cannot be read (the archive's own check then says why)."""
    from pydicom import dcmread

    try:
        dataset = dcmread(source, stop_before_pixels=True,
                          specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
    except Exception:  # anything unreadable is the archive's to refuse with a reason
        return None, None, None
    return tuple(_text(dataset.get(keyword)) for keyword in  # type: ignore[return-value]
                 ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"))


def _text(value: object) -> str | None:
    text = str(value).strip("\0 ") if value is not None else ""
    return text or None
