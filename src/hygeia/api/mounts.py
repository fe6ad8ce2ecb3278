"""Serving the mounts (HTTP routes outside ``/fhir``) from the WSGI app.

A mount sees a :class:`~hygeia.server.extensions.MountRequest`, never WSGI:
the body is read here (the front end has already refused one over the mount's
limit, and this checks again, since the front end matches the raw path and
this one the decoded path), or, for a mount that ``spools_body``, left in the
front end's temporary file, the token verified when the mount requires one,
and a :class:`~hygeia.fhir.outcome.FhirError` answered as an OperationOutcome.
"""

from __future__ import annotations

import logging
import tempfile
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qsl

import orjson

from hygeia.api.origin import server_root
from hygeia.fhir.outcome import FhirError, Issue, PayloadTooLarge, operation_outcome
from hygeia.server.extensions import MountRequest, MountResponse

if TYPE_CHECKING:
    from hygeia.server import FhirService
    from hygeia.server.extensions import Mount

log = logging.getLogger("hygeia.api")
_FHIR_JSON = "application/fhir+json"
_CHUNK = 1024 * 1024


def mount_body_limits(service: FhirService) -> tuple[tuple[str, int], ...]:
    """(prefix, body limit) of each mount that sets its own, for the HTTP front end."""
    return tuple((prefix, mount.max_body_bytes) for mount in service.mounts
                 if mount.max_body_bytes is not None for prefix in mount.prefixes)


def mount_spool_prefixes(service: FhirService) -> tuple[str, ...]:
    """The prefixes of the mounts whose request bodies go to a temporary file."""
    return tuple(prefix for mount in service.mounts if getattr(mount, "spools_body", False)
                 for prefix in mount.prefixes)


def answer_mount(service: FhirService, mount: Mount, environ: dict[str, Any],
                 path: str) -> MountResponse:
    """The mount's answer to one request (errors included)."""
    try:
        return mount.handle(_request(service, mount, environ, path))
    except FhirError as error:
        return MountResponse(error.status, orjson.dumps(error.outcome()), _FHIR_JSON,
                             dict(error.headers))
    except Exception:
        log.exception("the mount %s failed on %s %s", mount.name, environ["REQUEST_METHOD"],
                      path)
        return MountResponse(500, orjson.dumps(operation_outcome([Issue(
            "exception", "The server failed unexpectedly; the error was logged.",
            severity="fatal")])), _FHIR_JSON)


def _request(service: FhirService, mount: Mount, environ: dict[str, Any],
             path: str) -> MountRequest:
    limit = mount.max_body_bytes or service.settings.max_body_bytes
    spooled = getattr(mount, "spools_body", False)
    body, body_file, body_size = (b"", *_spooled(environ, limit)) if spooled else \
        (_body(environ, limit), None, 0)
    root = server_root(service.settings, environ)
    access = None
    if mount.requires_token and service.auth is not None:
        access = service.auth.authenticate(environ.get("HTTP_AUTHORIZATION"), f"{root}/fhir/",
                                           environ.get("REMOTE_ADDR"))
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
               if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return MountRequest(environ["REQUEST_METHOD"], path, query, headers, body, root,
                        environ.get("REMOTE_ADDR"), access, body_file, body_size)


def _body(environ: dict[str, Any], limit: int) -> bytes:
    declared = environ.get("CONTENT_LENGTH") or "0"
    size = int(declared) if declared.isdigit() else 0
    if size > limit:
        raise_too_large(size, limit)
    return environ["wsgi.input"].read(size) if size else b""


def _spooled(environ: dict[str, Any], limit: int) -> tuple[BinaryIO | None, int]:
    """The body as a file with a descriptor: the front end's temporary file, or (another
    WSGI server) a copy of ``wsgi.input`` made in chunks."""
    declared = environ.get("CONTENT_LENGTH") or "0"
    size = int(declared) if declared.isdigit() else 0
    if size > limit:
        raise_too_large(size, limit)
    if not size:
        return None, 0
    source = environ["wsgi.input"]
    try:
        source.fileno()
        return source, size
    except (AttributeError, OSError, ValueError):
        pass
    copy = tempfile.TemporaryFile(prefix="hygeia-body-")  # noqa: SIM115 (the mount closes it)
    left = size
    while left > 0:
        chunk = source.read(min(left, _CHUNK))
        if not chunk:
            break
        copy.write(chunk)
        left -= len(chunk)
    copy.seek(0)
    return copy, size - left


def raise_too_large(size: int, limit: int) -> None:
    raise PayloadTooLarge(f"The body ({size} bytes) is over this path's {limit}-byte limit.",
                          expression="Content-Length")
