"""HTTP for the authorization server: ``/auth/*`` and ``.well-known/smart-configuration``.

The OAuth endpoints answer in OAuth's own format (RFC 6749 section 5.2:
``{"error": ..., "error_description": ...}``), because that is what every
OAuth and SMART client library parses; the FHIR API itself keeps answering
errors with OperationOutcomes.  Token responses are never cached.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from hygeia.api.auth_pages import sign_in_html
from hygeia.api.origin import server_root
from hygeia.server import FhirService
from hygeia.server.auth.authorize import PageError, Redirect
from hygeia.server.auth.clients import OAuthError
from hygeia.server.auth.server import AuthServer

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM_LIMIT = 64 * 1024
DISCOVERY_PATHS = ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration")

# (status, headers, body, media type)
Answer = tuple[int, dict[str, str], bytes, str]


def auth_answer(service: FhirService, environ: dict[str, Any]) -> Answer | None:
    """The answer to an auth request, or None when the path is not an auth path."""
    path = environ.get("PATH_INFO", "")
    auth = service.auth
    if auth is None or not (path.startswith("/auth/") or path in DISCOVERY_PATHS):
        return None
    origin = server_root(service.settings, environ)
    method = environ["REQUEST_METHOD"]
    if path in DISCOVERY_PATHS:
        return _json(200, auth.smart_configuration(origin))
    if auth.external is not None:
        return _json(404, {"error": "not_found", "error_description": "Tokens come from "
                           f"{auth.external.issuer}; this server issues none."})
    if path == "/auth/jwks":
        return _json(200, auth.signer.jwks())
    if path == "/auth/authorize":
        return _authorize(service, auth, environ, origin, method)
    handler = _POST_ENDPOINTS.get(path)
    if handler is None:
        return _json(404, {"error": "not_found", "error_description": f"Nothing at {path}."})
    if method != "POST":
        return _json(405, {"error": "invalid_request",
                           "error_description": f"{path} takes POST."})
    try:
        form = _form(environ)
        return handler(auth, form, environ.get("HTTP_AUTHORIZATION"), origin,
                       environ.get("REMOTE_ADDR"))
    except OAuthError as error:
        headers = {"WWW-Authenticate": "Basic"} if error.status == 401 else {}
        return _json(error.status, error.body(), headers)


def _token(auth: AuthServer, form: dict[str, str], authorization: str | None,
           origin: str, remote: str | None) -> Answer:
    return _json(200, auth.token(form, authorization, origin, remote))


def _introspect(auth: AuthServer, form: dict[str, str], authorization: str | None,
                origin: str, remote: str | None) -> Answer:
    return _json(200, auth.introspect(form, authorization, origin))


def _revoke(auth: AuthServer, form: dict[str, str], authorization: str | None,
            origin: str, remote: str | None) -> Answer:
    auth.revoke(form, authorization, origin, remote)
    return _json(200, {})


_POST_ENDPOINTS: dict[str, Callable[[AuthServer, dict[str, str], str | None, str, str | None],
                                     Answer]] = {
    "/auth/token": _token, "/auth/introspect": _introspect, "/auth/revoke": _revoke}


def _authorize(service: FhirService, auth: AuthServer, environ: dict[str, Any], origin: str,
               method: str) -> Answer:
    if method not in ("GET", "POST"):
        return _page(405, "The authorization endpoint takes GET or POST.")
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    try:
        form = _form(environ) if method == "POST" else None
        # SMART allows the whole authorization request as a POSTed form (authorize-post)
        params = {**query, **(form or {})}
        if form is not None and "decision" not in form:
            form = None
        outcome = auth.authorize(params, form, f"{origin}/fhir", service.patient_exists,
                                 environ.get("REMOTE_ADDR"))
    except PageError as error:
        return _page(400, str(error))
    except OAuthError as error:
        return _page(error.status, error.description)
    if isinstance(outcome, Redirect):
        return 302, {"Location": outcome.url, **_NO_STORE}, b"", "text/plain"
    status = 200 if outcome.problem is None else 401
    return status, dict(_NO_STORE), sign_in_html(outcome).encode(), "text/html; charset=utf-8"


def _form(environ: dict[str, Any]) -> dict[str, str]:
    """The urlencoded body (OAuth endpoints take forms only)."""
    kind = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send the parameters as "
                         "application/x-www-form-urlencoded.")
    length = environ.get("CONTENT_LENGTH") or "0"
    size = int(length) if length.isdigit() else 0
    if size > _FORM_LIMIT:
        raise OAuthError("invalid_request", f"The form is over {_FORM_LIMIT} bytes.")
    raw = environ["wsgi.input"].read(size) if size else b""
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
    return status, {**_NO_STORE, **(headers or {})}, orjson.dumps(body), "application/json"


def _page(status: int, message: str) -> Answer:
    text = f"<!doctype html><title>Hygeia sign-in</title><p>{html.escape(message)}</p>"
    return status, dict(_NO_STORE), text.encode(), "text/html; charset=utf-8"
