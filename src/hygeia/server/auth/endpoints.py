"""The authorization server's HTTP endpoints, as a mount: ``/auth/*`` and SMART discovery.

The OAuth endpoints answer in OAuth's own format (RFC 6749 section 5.2:
``{"error": ..., "error_description": ...}``), because that is what every
OAuth and SMART client library parses; the FHIR API itself keeps answering
errors with OperationOutcomes.  Token responses are never cached.  A form is
at most 64 KB: the mount's body limit, which the HTTP front end enforces
before it reads the body.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from hygeia.server.auth.authorize import PageError, Redirect
from hygeia.server.auth.clients import OAuthError
from hygeia.server.auth.pages import sign_in_html
from hygeia.server.auth.server import AuthServer
from hygeia.server.extensions import MountRequest, MountResponse

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM_LIMIT = 64 * 1024
DISCOVERY_PATHS = ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration")


class AuthMount:
    """``/auth/*`` (authorize, token, introspect, revoke, jwks) and SMART discovery."""

    name = "auth"
    prefixes = ("/auth", *DISCOVERY_PATHS)
    max_body_bytes = FORM_LIMIT
    requires_token = False

    def __init__(self, auth: AuthServer, patient_exists: Callable[[str], bool]) -> None:
        self.auth = auth
        self.patient_exists = patient_exists

    def handle(self, request: MountRequest) -> MountResponse:
        auth, path, origin = self.auth, request.path, request.root
        if path in DISCOVERY_PATHS:
            return _json(200, auth.smart_configuration(origin))
        if auth.external is not None:
            return _json(404, {"error": "not_found", "error_description": "Tokens come from "
                               f"{auth.external.issuer}; this server issues none."})
        if path == "/auth/jwks":
            return _json(200, auth.signer.jwks())
        if path == "/auth/authorize":
            return self._authorize(request)
        handler = _POST_ENDPOINTS.get(path)
        if handler is None:
            return _json(404, {"error": "not_found", "error_description": f"Nothing at {path}."})
        if request.method != "POST":
            return _json(405, {"error": "invalid_request",
                               "error_description": f"{path} takes POST."})
        try:
            return handler(auth, _form(request), request.headers.get("authorization"), origin,
                           request.remote)
        except OAuthError as error:
            headers = {"WWW-Authenticate": "Basic"} if error.status == 401 else {}
            return _json(error.status, error.body(), headers)

    def _authorize(self, request: MountRequest) -> MountResponse:
        if request.method not in ("GET", "POST"):
            return _page(405, "The authorization endpoint takes GET or POST.")
        try:
            form = _form(request) if request.method == "POST" else None
            # SMART allows the whole authorization request as a POSTed form (authorize-post)
            params = {**dict(request.query), **(form or {})}
            if form is not None and "decision" not in form:
                form = None
            outcome = self.auth.authorize(params, form, f"{request.root}/fhir",
                                          self.patient_exists, request.remote)
        except PageError as error:
            return _page(400, str(error))
        except OAuthError as error:
            return _page(error.status, error.description)
        if isinstance(outcome, Redirect):
            return MountResponse(302, b"", "text/plain", {"Location": outcome.url, **_NO_STORE})
        status = 200 if outcome.problem is None else 401
        return MountResponse(status, sign_in_html(outcome).encode(), "text/html; charset=utf-8",
                             dict(_NO_STORE))


def _token(auth: AuthServer, form: dict[str, str], authorization: str | None,
           origin: str, remote: str | None) -> MountResponse:
    return _json(200, auth.token(form, authorization, origin, remote))


def _introspect(auth: AuthServer, form: dict[str, str], authorization: str | None,
                origin: str, remote: str | None) -> MountResponse:
    return _json(200, auth.introspect(form, authorization, origin))


def _revoke(auth: AuthServer, form: dict[str, str], authorization: str | None,
            origin: str, remote: str | None) -> MountResponse:
    auth.revoke(form, authorization, origin, remote)
    return _json(200, {})


_POST_ENDPOINTS: dict[str, Callable[[AuthServer, dict[str, str], str | None, str, str | None],
                                     MountResponse]] = {
    "/auth/token": _token, "/auth/introspect": _introspect, "/auth/revoke": _revoke}


def _form(request: MountRequest) -> dict[str, str]:
    """The urlencoded body (OAuth endpoints take forms only)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send the parameters as "
                         "application/x-www-form-urlencoded.")
    return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
          ) -> MountResponse:
    return MountResponse(status, orjson.dumps(body), "application/json",
                         {**_NO_STORE, **(headers or {})})


def _page(status: int, message: str) -> MountResponse:
    text = f"<!doctype html><title>Hygeia sign-in</title><p>{html.escape(message)}</p>"
    return MountResponse(status, text.encode(), "text/html; charset=utf-8", dict(_NO_STORE))
