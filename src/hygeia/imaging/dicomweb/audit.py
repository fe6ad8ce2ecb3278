"""Every DICOMweb request leaves an AuditEvent, as every FHIR request does.

The event has the shape of the FHIR API's (IHE BALP, :mod:`hygeia.server.audit.events`):
subtype ``operation`` plus ``urn:hygeia:operation|dicomweb-stow`` (``-qido``,
``-wado``, ``-metadata``, ``-rendered``), action C (store), E (search) or R
(retrieve), the client and user as agents, the request as the query entity, the
ImagingStudy resources and patients it reached, and outcome 4 with the reason when
it was refused. It is stored in its own transaction before the answer is sent, so
no answered request goes unrecorded. Like the rest of the trail it is on with
``hygeia serve --audit`` (and always with ``--auth``).
"""

from __future__ import annotations

from hygeia.server.audit.events import SUCCESS, What, Who, outcome_for, query_text, rest_event
from hygeia.server.audit.trail import store_event
from hygeia.server.extensions import Host, MountRequest

_ACTIONS = {"stow": "C", "qido": "E", "wado": "R", "metadata": "R", "rendered": "R"}


def record(host: Host, request: MountRequest, service: str, status: int, *,
           description: str | None = None, references: tuple[str, ...] = (),
           patients: tuple[str, ...] = ()) -> None:
    """Store the AuditEvent of one DICOMweb request (``service``: stow, qido, wado ...)."""
    if not host.settings.audit.enabled:
        return
    site = f"{request.root}/dicomweb"
    what = What(f"dicomweb-{service}", SUCCESS if status < 400 else outcome_for(status),
                description=description, references=list(references),
                patients=list(patients),
                query=query_text(request.method, f"{request.root}{request.path}",
                                 request.query),
                action=_ACTIONS.get(service, "E"))
    event = rest_event(Who(access=request.access, remote=request.remote), what, site)
    with host.transaction() as session:
        store_event(session, event)
