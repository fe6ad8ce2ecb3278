"""The Starlette application that serves the FHIR REST API under ``/fhir``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hygeia.api.negotiation import (
    FHIR_JSON,
    FORM_TYPE,
    check_accept,
    check_request_type,
    parse_prefer,
)
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
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
_WRITE_METHODS = {"POST", "PUT", "PATCH"}


def create_app(service: FhirService) -> Starlette:
    """Build the ASGI app around a FhirService."""

    async def fhir_endpoint(request: Request) -> Response:
        try:
            fhir_request = await _to_fhir_request(request, service)
            fhir_response = await run_in_threadpool(service.handle, fhir_request)
            return _to_http(fhir_response, fhir_request, request)
        except FhirError as error:
            return _error_response(error, request)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return _outcome_response(500, operation_outcome([Issue(
                "exception", "The server failed unexpectedly; the error was logged.",
                severity="fatal")]), request)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = f"There is nothing at {request.url.path}; the FHIR base is /fhir."
        if status == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        return _outcome_response(status, operation_outcome(
            [Issue("not-found" if status == 404 else "not-supported", message)]), request)

    routes = [
        Route("/fhir", fhir_endpoint, methods=METHODS),
        Route("/fhir/{path:path}", fhir_endpoint, methods=METHODS),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


async def _to_fhir_request(request: Request, service: FhirService) -> FhirRequest:
    headers = request.headers
    query = list(request.query_params.multi_items())
    check_accept(headers.get("accept"), request.query_params.get("_format"))
    body, content_type = None, "application/fhir+json"
    if request.method in _WRITE_METHODS or headers.get("content-length") not in (None, "0"):
        content_type = check_request_type(headers.get("content-type"), request.method)
        raw = await _read_body(request, service.settings.max_body_bytes)
        if content_type == FORM_TYPE:
            query.extend(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        elif raw.strip():
            body = _parse_json(raw)
        elif request.method in ("POST", "PUT", "PATCH") and not request.url.path.endswith(
                "/_search"):
            raise BadRequest(f"{request.method} needs a request body.", code="required")
    prefer_return, strict = parse_prefer(headers.get("prefer"))
    path = request.path_params.get("path", "")
    return FhirRequest(
        method=request.method, path=path, query=query, body=body,
        base_url=str(request.base_url).rstrip("/") + "/fhir/", content_type=content_type,
        if_match=headers.get("if-match"), if_none_match=headers.get("if-none-match"),
        if_none_exist=headers.get("if-none-exist"),
        if_modified_since=headers.get("if-modified-since"),
        prefer_return=prefer_return, prefer_strict=strict,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body ({declared} bytes) is over the {limit}-byte limit.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is over the {limit}-byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The body is not valid JSON: {error}.", code="structure") from None


def _to_http(response: FhirResponse, fhir_request: FhirRequest, request: Request) -> Response:
    headers = dict(response.headers)
    if response.etag:
        headers["ETag"] = response.etag
    if response.last_updated is not None:
        headers["Last-Modified"] = format_http_date(response.last_updated)
    if response.location:
        headers["Location"] = response.location
        if response.status == 201:
            headers["Content-Location"] = response.location
    body = _response_body(response, fhir_request)
    if body is None or request.method == "HEAD" or response.status in (204, 304):
        return Response(status_code=response.status, headers=headers)
    return Response(_dump(body, request), status_code=response.status, headers=headers,
                    media_type=FHIR_JSON)


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


def _dump(body: Any, request: Request) -> bytes:
    if request.query_params.get("_pretty") != "true":
        return orjson.dumps(body)
    # stored resources are embedded as raw fragments, which orjson cannot indent
    return orjson.dumps(orjson.loads(orjson.dumps(body)), option=orjson.OPT_INDENT_2)


def _error_response(error: FhirError, request: Request) -> Response:
    response = _outcome_response(error.status, error.outcome(), request)
    response.headers.update(error.headers)
    return response


def _outcome_response(status: int, outcome: dict[str, Any], request: Request) -> Response:
    return Response(_dump(outcome, request), status_code=status, media_type=FHIR_JSON)

