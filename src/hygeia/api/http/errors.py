"""The errors the HTTP layer answers itself, before any request reaches the app.

They are FhirErrors like every other error a client sees, so their bodies are
OperationOutcomes with a sentence; :func:`error_answer` turns one into the
bytes of a complete HTTP/1.1 response.  Hierarchy (beside fhir/outcome.py's)::

    FhirError
    +-- RequestTimeout          408  head or body did not arrive in time
    +-- UriTooLong              414
    +-- TooManyRequests         429  too many connections from one address
    +-- HeaderFieldsTooLarge    431
    +-- NotImplementedHere      501  a transfer coding other than chunked before chunked
    +-- ServiceUnavailable      503  the process is at its connection or memory cap
    +-- HttpVersionNotSupported 505  HTTP/2.0 and later spoken as text
"""

from __future__ import annotations

import orjson

from hygeia.fhir.outcome import FhirError


class RequestTimeout(FhirError):
    status = 408
    default_code = "timeout"


class UriTooLong(FhirError):
    status = 414
    default_code = "too-long"


class TooManyRequests(FhirError):
    status = 429
    default_code = "throttled"


class HeaderFieldsTooLarge(FhirError):
    status = 431
    default_code = "too-long"


class NotImplementedHere(FhirError):
    status = 501
    default_code = "not-supported"


class ServiceUnavailable(FhirError):
    status = 503
    default_code = "transient"


class HttpVersionNotSupported(FhirError):
    status = 505
    default_code = "not-supported"


_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}


def error_answer(error: FhirError, *, keep_alive: bool = False) -> bytes:
    """A whole response carrying ``error``'s OperationOutcome; it closes the connection
    unless ``keep_alive`` (the request was read to its end, so the next one can follow)."""
    body = orjson.dumps(error.outcome())
    head = [f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}",
            "Content-Type: application/fhir+json",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive" if keep_alive else "Connection: close"]
    head.extend(f"{name}: {value}" for name, value in error.headers.items())
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
