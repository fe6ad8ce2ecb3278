"""CORS for browser apps: SMART apps running in a browser call the FHIR API and the
token endpoint from their own origin.

Access is by bearer token, never by cookie, so any origin may call: a page
that has no token gets nothing more than ``curl`` would.  Preflights
(``OPTIONS``) are answered here, before routing.
"""

from __future__ import annotations

from typing import Any

ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = ("Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, "
                   "If-None-Exist, If-Modified-Since, X-Provenance")
EXPOSED_HEADERS = ("Location, Content-Location, ETag, Last-Modified, X-Progress, Retry-After, "
                   "Expires, WWW-Authenticate")
PREFLIGHT_SECONDS = "600"


def cors_headers(environ: dict[str, Any]) -> dict[str, str]:
    """Headers for a response to a cross-origin request (none for same-origin calls)."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers":
            EXPOSED_HEADERS}


def is_preflight(environ: dict[str, Any]) -> bool:
    return environ["REQUEST_METHOD"] == "OPTIONS" and bool(
        environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"))


def preflight_headers() -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_SECONDS}
