"""``/dicomweb``: STOW-RS, QIDO-RS and WADO-RS on the server's own port.

The mount routes a request (:mod:`.routes`), checks the token's ImagingStudy
scopes and the patients they reach (:mod:`.access`), runs the service
(:mod:`.stow`, :mod:`.search`, :mod:`.retrieve`) and records an AuditEvent for
every request, answered or refused (:mod:`.audit`). Its body limit is its own
(``hygeia serve --dicomweb-max-body-mb``, default 4 GiB) and its bodies are
spooled to a temporary file by the front end, never held in memory. Errors are
OperationOutcomes with the reason (400 malformed, 401/403 scopes, 404 unknown
UIDs, 406 unacceptable media type, 413 too large, 415 not multipart/related);
a STOW-RS request whose parts all fail is a 409 with the DICOM JSON of reasons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hygeia.fhir.outcome import FhirError, NotAcceptable
from hygeia.imaging.dicomweb import audit
from hygeia.imaging.dicomweb.access import reach
from hygeia.imaging.dicomweb.retrieve import metadata, rendered, retrieve
from hygeia.imaging.dicomweb.routes import PREFIX, Route, parse_route
from hygeia.imaging.dicomweb.search import search
from hygeia.imaging.dicomweb.stow import answer, stow
from hygeia.imaging.settings import DEFAULT_MAX_BODY_BYTES
from hygeia.server.extensions import Host, MountRequest, MountResponse

if TYPE_CHECKING:
    from hygeia.imaging.archive import Archive

# the cruds letter each service needs on ImagingStudy
_ACTION = {"stow": "c", "qido": "s", "wado": "r", "metadata": "r", "rendered": "r"}


class DicomWebMount:
    """The DICOMweb services over the imaging archive (module docstring)."""

    name = "dicomweb"
    prefixes = (PREFIX,)
    requires_token = True
    spools_body = True  # STOW-RS bodies go to a temporary file as they arrive

    def __init__(self, host: Host, archive: Archive,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.host = host
        self.archive = archive
        self.max_body_bytes: int | None = max_body_bytes

    def handle(self, request: MountRequest) -> MountResponse:
        service = "request"
        try:
            route = parse_route(request.method, request.path)
            service = route.service
            return self._serve(request, route)
        except FhirError as error:
            audit.record(self.host, request, service, error.status,
                         description=str(error))
            raise
        finally:
            if request.body_file is not None:
                request.body_file.close()

    def _serve(self, request: MountRequest, route: Route) -> MountResponse:
        allowed = reach(self.host, request.access, _ACTION[route.service])
        if route.service == "stow":
            result = stow(self.archive, request, route.study)
            audit.record(self.host, request, "stow", result.status,
                         description="; ".join(result.reasons)[:1000] or None)
            return answer(result, request.root)
        if route.service in ("qido", "metadata"):
            _json_accepted(request.headers.get("accept"))
        if route.service == "qido":
            response, _ = search(self.archive, request, route, allowed)
        elif route.service == "metadata":
            response = metadata(self.archive, request, route, allowed)
        elif route.service == "rendered":
            response = rendered(self.archive, request, route, allowed)
        else:
            response = retrieve(self.archive, request, route, allowed)
        audit.record(self.host, request, route.service, response.status,
                     references=allowed.references, patients=allowed.patients)
        return response


_JSON_TYPES = frozenset({"application/dicom+json", "application/json", "application/*", "*/*"})


def _json_accepted(accept: str | None) -> None:
    """QIDO-RS and metadata answer DICOM JSON only: 406 when Accept excludes it."""
    if not accept:
        return
    for entry in accept.split(","):
        media, *params = (piece.strip() for piece in entry.split(";"))
        refused = any(param.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000")
                      for param in params)
        if media.lower() in _JSON_TYPES and not refused:
            return
    raise NotAcceptable("This server answers QIDO-RS and metadata as application/dicom+json; "
                        f"the Accept header asks for {accept[:120]}.", expression="Accept")
