"""The WSGI application that serves the FHIR REST API under ``/fhir``.

WSGI rather than ASGI because the service below is synchronous (sqlite3 and
psycopg calls on the request thread): the HTTP server's own threads call
straight into it (docs/adr/0002); since docs/adr/0003 that server is Hygeia's own
front end (api/http), which hands the app whole requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson

from hygeia.api.compression import encode_body
from hygeia.api.cors import cors_headers, is_preflight, preflight_headers
from hygeia.api.health import probe_answer
from hygeia.api.metrics import Metrics
from hygeia.api.mounts import answer_mount
from hygeia.api.negotiation import (
    FHIR_JSON,
    FORM_TYPE,
    check_accept,
    check_request_type,
    is_json_format,
    parse_prefer,
    response_type,
)
from hygeia.api.origin import server_root
from hygeia.fhir.datetime import format_http_date
from hygeia.fhir.outcome import (
    BadRequest,
    FhirError,
    Issue,
    PayloadTooLarge,
    information,
    operation_outcome,
)
from hygeia.server import FhirRequest, FhirResponse, FhirService

log = logging.getLogger("hygeia.api")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
_WRITE_METHODS = {"POST", "PUT", "PATCH"}
_BASE = "/fhir"
_CHUNK = 1 << 16
# open without a token: the CapabilityStatement says how to get one (SMART discovery)
_OPEN_PATHS = frozenset({"metadata", "openapi.json"})

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class HttpResponse:
    """Status, headers and body on their way out; the WSGI tail of every request."""

    __slots__ = ("body", "headers", "media_type", "status", "stream")

    def __init__(self, status: int, headers: dict[str, str] | None = None,
                 body: bytes = b"", *, media_type: str | None = None,
                 stream: Iterator[bytes] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.media_type = media_type
        self.stream = stream  # sent chunk by chunk; Content-Length comes in ``headers``

    def encode(self, accept_encoding: str | None) -> None:
        """gzip the body when the client accepts it and it is worth it (api/compression)."""
        if self.stream is not None or self.status == 204:
            return
        self.body = encode_body(self.body, self.media_type, self.headers, accept_encoding)

    def send(self, start_response: StartResponse, method: str) -> Iterable[bytes]:
        headers = list(self.headers.items())
        if self.body or self.stream is not None:
            headers.append(("Content-Type", self.media_type or FHIR_JSON))
        if self.status not in (204, 304) and self.stream is None:
            headers.append(("Content-Length", str(len(self.body))))
        start_response(f"{self.status} {_phrase(self.status)}", headers)
        if method == "HEAD":
            return []
        return self.stream if self.stream is not None else [self.body]


def create_app(service: FhirService) -> WsgiApp:
    """Build the WSGI app around a FhirService."""

    metrics = Metrics(service)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"]
        if is_preflight(environ):
            return HttpResponse(204, preflight_headers()).send(start_response, method)
        # probes and metrics: never audited, never a token
        answer = probe_answer(service, environ) or metrics.answer(environ)
        path = _native(environ.get("PATH_INFO", ""))
        mount = service.mount_for(path) if answer is None else None
        if answer is not None:
            status, headers, body, media_type = answer
            response = HttpResponse(status, headers, body, media_type=media_type)
        elif mount is not None:
            with service.request_limits():  # a mount queries the database too
                mounted = answer_mount(service, mount, environ, path)
            body, stream = (mounted.body, None) if isinstance(mounted.body, bytes) else \
                (b"", iter(mounted.body))
            response = HttpResponse(mounted.status, mounted.headers, body,
                                    media_type=mounted.media_type, stream=stream)
        else:
            response = _respond(service, environ)
        response.media_type = response.media_type or response_type(environ.get("HTTP_ACCEPT"))
        response.headers.update(cors_headers(environ))
        response.encode(environ.get("HTTP_ACCEPT_ENCODING"))
        metrics.observe(environ, response.status, time.perf_counter() - started)
        return response.send(start_response, method)

    return app


def _respond(service: FhirService, environ: dict[str, Any]) -> HttpResponse:
    query = _query(environ)
    try:
        fhir_request = _to_fhir_request(environ, query, service)
        if fhir_request is None:
            return _not_routed(environ, query)
        return _to_http(service.handle(fhir_request), fhir_request, query)
    except FhirError as error:
        response = _outcome_response(error.status, error.outcome(), query)
        response.headers.update(error.headers)
        return response
    except Exception:
        log.exception("unexpected error on %s %s", environ["REQUEST_METHOD"],
                      environ.get("PATH_INFO"))
        return _outcome_response(500, operation_outcome([Issue(
            "exception", "The server failed unexpectedly; the error was logged.",
            severity="fatal")]), query)


def _query(environ: dict[str, Any]) -> list[tuple[str, str]]:
    return parse_qsl(_native(environ.get("QUERY_STRING", "")), keep_blank_values=True)


def _native(text: str) -> str:
    """Undo PEP 3333's latin-1 decoding so raw UTF-8 in a URL reads as UTF-8."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _fhir_path(environ: dict[str, Any]) -> str | None:
    """The path below the FHIR base, or None when the request is not under /fhir."""
    path = _native(environ.get("PATH_INFO", ""))
    if path == _BASE:
        return ""
    if path.startswith(_BASE + "/"):
        return path[len(_BASE) + 1:]
    return None


def _to_fhir_request(environ: dict[str, Any], query: list[tuple[str, str]],
                     service: FhirService) -> FhirRequest | None:
    method = environ["REQUEST_METHOD"]
    path = _fhir_path(environ)
    if path is None or method not in METHODS:
        return None
    format_param = _first(query, "_format")
    own = service.own_formats(method, path) if format_param is not None and \
        not is_json_format(format_param) else frozenset()
    check_accept(environ.get("HTTP_ACCEPT"), format_param, own)
    base_url = _base_url(service, environ)
    access = None
    if service.auth is not None and path not in _OPEN_PATHS:
        access = service.auth.authenticate(environ.get("HTTP_AUTHORIZATION"), base_url,
                                           environ.get("REMOTE_ADDR"))
    body, raw_json, content_type = None, None, "application/fhir+json"
    declared = environ.get("CONTENT_LENGTH") or None
    if method in _WRITE_METHODS or declared not in (None, "0"):
        content_type = check_request_type(environ.get("CONTENT_TYPE"), method)
        raw = _read_body(environ, declared, service.settings.max_body_bytes)
        if content_type == FORM_TYPE:
            query.extend(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        elif raw.strip():
            body, raw_json = _parse_json(raw, service.settings.max_json_values), raw
        elif method in _WRITE_METHODS and not _empty_body_allowed(path):
            raise BadRequest(f"{method} needs a request body.", code="required")
    prefer = parse_prefer(environ.get("HTTP_PREFER"))
    return FhirRequest(
        method=method, path=path, query=query, body=body,
        base_url=base_url, content_type=content_type, access=access,
        if_match=environ.get("HTTP_IF_MATCH"), if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
        if_none_exist=environ.get("HTTP_IF_NONE_EXIST"),
        if_modified_since=environ.get("HTTP_IF_MODIFIED_SINCE"),
        prefer_return=prefer.return_, prefer_strict=prefer.strict, raw_body=raw_json,
        prefer_lenient=prefer.lenient, prefer_async=prefer.respond_async,
        remote=environ.get("REMOTE_ADDR"), provenance=_provenance(environ),
    )


def _empty_body_allowed(path: str) -> bool:
    """A search by POST, and an operation (``$reindex``, ``$export``), may come without a
    body: for an operation an empty body means "no parameters", as the query string would."""
    last = path.rpartition("/")[2]
    return last == "_search" or last.startswith("$")


def _provenance(environ: dict[str, Any]) -> str | None:
    """The X-Provenance header (a Provenance as JSON), decoded as UTF-8."""
    value = environ.get("HTTP_X_PROVENANCE")
    return None if value is None else _native(value)


def _first(query: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in query if key == name), None)


def _base_url(service: FhirService, environ: dict[str, Any]) -> str:
    """The FHIR base from the configured server root, never from the Host header."""
    return f"{server_root(service.settings, environ)}{_BASE}/"


def _read_body(environ: dict[str, Any], declared: str | None, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be over ``limit``."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body ({declared} bytes) is over the {limit}-byte limit.")
    stream = environ["wsgi.input"]
    remaining = int(declared) if declared and declared.isdigit() else None
    chunks, size = [], 0
    while remaining is None or remaining > 0:
        chunk = stream.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is over the {limit}-byte limit.")
        chunks.append(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes, max_values: int) -> Any:
    """The body as Python values, refused before parsing when it holds too many.

    Parsed, a typical FHIR body takes about 2.5 times its size, but a body of
    tiny values (``[{"a":1},{"a":1},...]``) about 25 times, and validating and
    indexing it more again: 60 MB of them grew a worker to 1.7 GB. Counting
    values first bounds that by what the body holds, not by its bytes.
    """
    values = json_values_at_most(raw)
    if values > max_values:
        raise PayloadTooLarge(
            f"The body holds up to {values:,} JSON values, over the limit of "
            f"{max_values:,}; split it into smaller requests, or load large data with "
            "$import or hygeia load.", code="too-costly")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The body is not valid JSON: {error}.", code="structure") from None


def json_values_at_most(raw: bytes) -> int:
    """An upper bound of the values in a JSON text, without parsing it: every value but
    the first follows a comma or opens its container (commas, braces and brackets
    inside strings only make the bound looser)."""
    return raw.count(b",") + raw.count(b"[") + raw.count(b"{") + 1


def _to_http(response: FhirResponse, fhir_request: FhirRequest,
             query: list[tuple[str, str]]) -> HttpResponse:
    headers = dict(response.headers)
    if response.etag:
        headers["ETag"] = response.etag
    if response.last_updated is not None:
        headers["Last-Modified"] = format_http_date(response.last_updated)
    if response.location:
        headers["Location"] = response.location
        if response.status == 201:
            headers["Content-Location"] = response.location
    if response.stream is not None:
        return HttpResponse(response.status, headers, media_type=response.media_type,
                            stream=response.stream)
    body = _response_body(response, fhir_request)
    if body is None or response.status in (204, 304):
        return HttpResponse(response.status, headers)
    return HttpResponse(response.status, headers, _dump(body, query),
                        media_type=response.media_type)


def _response_body(response: FhirResponse, fhir_request: FhirRequest) -> Any:
    """Apply Prefer: return=... to writes; reads always return their body."""
    if fhir_request.method in ("POST", "PUT", "PATCH") and response.location:
        if fhir_request.prefer_return == "minimal":
            return None
        if fhir_request.prefer_return == "OperationOutcome":
            return information(f"{fhir_request.method} succeeded: {response.location}")
    if response.raw is not None:
        return orjson.Fragment(response.raw)
    return response.resource


def _dump(body: Any, query: list[tuple[str, str]]) -> bytes:
    if _first(query, "_pretty") != "true":
        return orjson.dumps(body)
    # stored resources are embedded as raw fragments, which orjson cannot indent
    return orjson.dumps(orjson.loads(orjson.dumps(body)), option=orjson.OPT_INDENT_2)


def _not_routed(environ: dict[str, Any], query: list[tuple[str, str]]) -> HttpResponse:
    method, path = environ["REQUEST_METHOD"], _native(environ.get("PATH_INFO", ""))
    if _fhir_path(environ) is not None:
        return _outcome_response(405, operation_outcome([Issue(
            "not-supported", f"{method} is not allowed on {path}.")]), query)
    return _outcome_response(404, operation_outcome([Issue(
        "not-found", f"There is nothing at {path}; the FHIR base is {_BASE}.")]), query)


def _outcome_response(status: int, outcome: dict[str, Any],
                      query: list[tuple[str, str]]) -> HttpResponse:
    return HttpResponse(status, {}, _dump(outcome, query))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
