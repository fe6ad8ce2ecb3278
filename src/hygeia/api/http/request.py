"""A request as the loop hands it to a thread, and the facts its head decides.

llhttp has already checked the syntax; these are the parts of the head the
front end acts on before any thread sees the request (framing, Host, version).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from hygeia.api.http.errors import HttpVersionNotSupported, NotImplementedHere
from hygeia.fhir.outcome import BadRequest, FhirError


@dataclass(slots=True)
class Request:
    """A request read whole by the loop, ready for a thread."""

    method: str
    target: bytes
    version: str  # "1.1" or "1.0"
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    has_body: bool  # Content-Length or Transfer-Encoding was sent (even for 0 bytes)
    reserved: int  # body bytes counted against the process's buffered limit
    # the body spooled to a temporary file instead of ``body`` (a mount that spools its
    # bodies, such as DICOMweb's STOW-RS): positioned at its start, closed after the answer
    body_file: BinaryIO | None = None
    body_size: int = 0


def framing(headers: list[tuple[bytes, bytes]]
            ) -> tuple[int | None, str | None, list[str], str | None]:
    """Content-Length, Transfer-Encoding, the Host values and Expect, from one pass."""
    length: int | None = None
    encoding = expect = None
    hosts: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == b"host":
            hosts.append(value.decode("latin-1"))
        elif key == b"content-length":
            length = int(value)  # llhttp has checked that it is a number
        elif key == b"transfer-encoding":
            encoding = value.decode("latin-1")
        elif key == b"expect":
            expect = value.decode("latin-1")
    return length, encoding, hosts, expect


def version_error(version: str) -> FhirError:
    if version.startswith("0."):
        return BadRequest(f"HTTP/{version} is not supported; send HTTP/1.1.")
    return HttpVersionNotSupported(f"HTTP/{version} is not supported here; send HTTP/1.1.")


def transfer_coding_error(codings: str) -> FhirError:
    """RFC 9112: without chunked as the final coding the body's length is unknown, which
    is a 400 (6.3, MUST); other codings before chunked are 501 (6.1, SHOULD)."""
    names = [name.strip().lower() for name in codings.split(",")]
    sentence = (f"Transfer-Encoding {codings.strip()!r} is not supported; send the body as "
                "is (Content-Length) or chunked.")
    if names[-1] != "chunked":
        return BadRequest(sentence, expression="Transfer-Encoding")
    return NotImplementedHere(sentence, expression="Transfer-Encoding")

