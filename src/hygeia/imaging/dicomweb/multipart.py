"""multipart/related (RFC 2387) as DICOMweb uses it: reading a STOW-RS body, writing
WADO-RS answers.

A STOW-RS body arrives spooled to a file (it may be gigabytes), so parts are found
by scanning that file for the boundary a chunk at a time, never by reading the body
into memory; each part is handed out as a window (offset, length) on the file.
Answers are generators of chunks, so a study is streamed instance by instance.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO

from hygeia.fhir.outcome import BadRequest, UnsupportedMediaType

MAX_PARTS = 10_000  # parts in one STOW-RS request
MAX_PART_HEADER_BYTES = 8 * 1024  # the header block of one part
SCAN_CHUNK = 1024 * 1024  # bytes of the body read at a time while looking for boundaries
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed Content-Type (or Accept entry): ``multipart/related`` and its parameters."""

    type: str  # lower case, e.g. "multipart/related"
    params: dict[str, str] = field(default_factory=dict)  # names in lower case

    @property
    def inner(self) -> str:
        """The ``type`` parameter of a multipart type, lower case (``application/dicom``)."""
        return self.params.get("type", "").strip().lower()


def parse_media_type(value: str) -> MediaType:
    """``multipart/related; type="application/dicom"; boundary=x`` -> its parts."""
    message = Message()
    message["content-type"] = value
    params = {key.lower(): str(val) for key, val in (message.get_params() or [])[1:]}
    return MediaType(message.get_content_type().lower(), params)


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its headers (names in lower case) and where its bytes are."""

    number: int  # 1-based, for messages
    headers: dict[str, str]
    offset: int
    length: int

    @property
    def content_type(self) -> str:
        return parse_media_type(self.headers.get("content-type", "application/octet-stream")
                                ).type


def related_boundary(content_type: str | None, inner: str) -> str:
    """The boundary of a ``multipart/related; type=inner`` body, or a 415/400 saying why not."""
    if not content_type:
        raise UnsupportedMediaType(
            f'Send the instances as multipart/related; type="{inner}" (no Content-Type was '
            "sent).", expression="Content-Type")
    media = parse_media_type(content_type)
    if media.type != "multipart/related":
        raise UnsupportedMediaType(
            f'Send the instances as multipart/related; type="{inner}", not {media.type}.',
            expression="Content-Type")
    if media.inner and media.inner != inner:
        raise UnsupportedMediaType(
            f'This server stores parts of type {inner}; the body declares type="{media.inner}".',
            expression="Content-Type")
    boundary = media.params.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise BadRequest("The multipart/related Content-Type needs a boundary parameter of "
                         "1 to 70 characters (RFC 2046).", expression="Content-Type")
    return boundary


def split_parts(body: BinaryIO, size: int, boundary: str) -> list[Part]:
    """The parts of a multipart body of ``size`` bytes in the file ``body``.

    Raises :class:`BadRequest` (with the part number) when the framing is broken: no
    opening or closing delimiter, a part without its blank line after the headers,
    more than :data:`MAX_PARTS` parts.
    """
    if size == 0:
        raise BadRequest("The body is empty; send one or more DICOM instances as parts.",
                         expression="body")
    return _scan(FileView(body.fileno(), size), size, boundary.encode("latin-1"))


class FileView:
    """The bytes of a file read where asked (``find`` and slices, as on ``bytes``), a
    chunk at a time with ``pread``: scanning a 4 GiB body holds one chunk in memory
    (a memory map would make every page of the body resident in the process)."""

    def __init__(self, descriptor: int, size: int) -> None:
        self.descriptor = descriptor
        self.size = size

    def find(self, sub: bytes, start: int, end: int | None = None) -> int:
        limit = self.size if end is None else min(end, self.size)
        position = start
        while position < limit:
            chunk = os.pread(self.descriptor, min(SCAN_CHUNK + len(sub) - 1, limit - position),
                             position)
            found = chunk.find(sub)
            if found >= 0:
                return position + found
            if not chunk or position + len(chunk) >= limit:
                return -1
            position += SCAN_CHUNK  # the next chunk overlaps this one by len(sub) - 1
        return -1

    def __getitem__(self, window: slice) -> bytes:
        start, stop = max(0, window.start or 0), min(self.size, window.stop)
        return os.pread(self.descriptor, stop - start, start) if stop > start else b""


def _scan(view: FileView, size: int, boundary: bytes) -> list[Part]:
    delimiter = b"--" + boundary
    start = 0 if _is_delimiter(view, 0, delimiter) else _next_delimiter(view, 0, delimiter)
    if start < 0:
        raise BadRequest("The body does not contain the boundary given in Content-Type.",
                         expression="body")
    start += len(delimiter) if start == 0 else len(delimiter) + 2
    parts: list[Part] = []
    while True:
        if view[start:start + 2] == b"--":
            return _closed(parts)
        line_end = view.find(_CRLF, start)
        if line_end < 0:
            break
        number = len(parts) + 1
        if number > MAX_PARTS:
            raise BadRequest(f"The body has more than {MAX_PARTS} parts; send fewer at a time.",
                             expression="body")
        headers, body_start = _headers(view, number, line_end + 2)
        end = _next_delimiter(view, body_start, delimiter)
        if end < 0:
            break
        parts.append(Part(number, headers, body_start, end - body_start))
        start = end + 2 + len(delimiter)
    raise BadRequest(f"The multipart body ends without its closing boundary (after "
                     f"{len(parts)} complete parts); it may have been truncated.",
                     expression="body")


def _is_delimiter(view: FileView, at: int, delimiter: bytes) -> bool:
    """A delimiter line: the boundary, then CRLF, ``--`` or transport padding (RFC 2046)."""
    after = at + len(delimiter)
    if view[at:after] != delimiter:
        return False
    return view[after:after + 2] in (_CRLF, b"--") or view[after:after + 1] in (b" ", b"\t")


def _next_delimiter(view: FileView, start: int, delimiter: bytes) -> int:
    """The offset of the CRLF before the next delimiter line at or after ``start``."""
    while True:
        found = view.find(_CRLF + delimiter, start)
        if found < 0 or _is_delimiter(view, found + 2, delimiter):
            return found
        start = found + 2


def _closed(parts: list[Part]) -> list[Part]:
    if not parts:
        raise BadRequest("The multipart body has no parts.", expression="body")
    return parts


def _headers(view: FileView, number: int, start: int) -> tuple[dict[str, str], int]:
    """The headers of the part whose header block begins at ``start``, and where its
    content begins."""
    if view[start:start + 2] == _CRLF:  # no headers at all
        return {}, start + 2
    blank = view.find(b"\r\n\r\n", start, start + MAX_PART_HEADER_BYTES)
    if blank < 0:
        raise BadRequest(f"Part {number} has no blank line ending its headers (or they are "
                         f"over {MAX_PART_HEADER_BYTES} bytes).", expression=f"part {number}")
    headers: dict[str, str] = {}
    for line in view[start:blank].split(_CRLF):
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise BadRequest(f"Part {number} has a header line without a colon.",
                             expression=f"part {number}")
        headers[name.strip().lower()] = value.strip()
    return headers, blank + 4


def new_boundary() -> str:
    return "hygeia-" + secrets.token_hex(12)


def related_content_type(inner: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type of a multipart/related answer whose parts are ``inner``."""
    inner_type = f"{inner};transfer-syntax={transfer_syntax}" if transfer_syntax else inner
    return f'multipart/related; type="{inner_type}"; boundary={boundary}'


def related_parts(parts: Iterable[tuple[str, Iterable[bytes]]], boundary: str
                  ) -> Iterator[bytes]:
    """Chunks of a multipart/related body: each part is (Content-Type, its chunks)."""
    delimiter = b"--" + boundary.encode("ascii")
    for content_type, chunks in parts:
        yield delimiter + b"\r\nContent-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
        yield from chunks
        yield _CRLF
    yield delimiter + b"--\r\n"
