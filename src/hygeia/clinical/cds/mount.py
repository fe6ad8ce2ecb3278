"""``/cds-services``: CDS Hooks 2.0 discovery, service calls and feedback.

``GET /cds-services`` lists the services; ``POST /cds-services/{id}`` answers a hook
call with cards (400 for a malformed call, 412 when prefetch is missing and cannot
be fetched); ``POST /cds-services/{id}/feedback`` stores feedback. A service that
fails answers 500 for that call only: the other services are not affected. Errors
are OperationOutcomes naming the field at fault.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson

from hygeia.clinical.cds.auth import CdsAuth
from hygeia.clinical.cds.feedback import store_feedback
from hygeia.clinical.cds.model import CdsService, HookCall
from hygeia.clinical.cds.prefetch import complete
from hygeia.clinical.cds.request import check_request, parse_body
from hygeia.fhir.outcome import Issue, MethodNotAllowed, NotFound, operation_outcome
from hygeia.server.extensions import Host, MountRequest, MountResponse

log = logging.getLogger("hygeia.clinical.cds")
PREFIX = "/cds-services"


class CdsMount:
    """The CDS Hooks endpoints of the built-in services."""

    name = "cds-hooks"
    prefixes = (PREFIX,)
    # the server's own --max-body-mb: a hook call's prefetch is a few of the patient's
    # resources, and a limit of its own above it would raise the buffered-bodies cap
    max_body_bytes: int | None = None
    requires_token = False  # CDS Hooks authenticates the EHR with its own JWT

    def __init__(self, host: Host, services: Sequence[CdsService]) -> None:
        self.host = host
        self.services = {service.id: service for service in services}
        self.auth = CdsAuth(host)

    def handle(self, request: MountRequest) -> MountResponse:
        parts = [part for part in request.path.removeprefix(PREFIX).split("/") if part]
        if not parts:
            self._only(request, "GET")
            return _json(200, {"services": [service.discovery()
                                            for service in self.services.values()]})
        service = self.services.get(parts[0])
        if service is None or len(parts) > 2 or (len(parts) == 2 and parts[1] != "feedback"):
            raise NotFound(f"No CDS service at {request.path[:200]}; GET {PREFIX} lists "
                           "them.", expression="path")
        self._only(request, "POST")
        endpoint = f"{request.root}{PREFIX}/{service.id}"
        self.auth.check(request.headers, endpoint if len(parts) == 1 else
                        [endpoint, f"{endpoint}/feedback"])
        body = parse_body(request.body)
        if len(parts) == 2:
            store_feedback(self.host, service.id, body)
            return _json(200, {})
        return self.call(service, body, request.root)

    def call(self, service: CdsService, body: dict[str, object], root: str) -> MountResponse:
        check_request(body, service.hook)
        prefetch = complete(self.host, service.prefetch, body, root)
        context = body["context"]
        assert isinstance(context, dict)  # check_request made sure
        call = HookCall(service.id, service.hook, str(body["hookInstance"]), context,
                        prefetch)
        try:
            cards = service.answer(call)
        except Exception:  # one service's bug must not look like a bad request
            log.exception("CDS service %s failed", service.id)
            return _json(500, operation_outcome([Issue(
                "exception", f"The CDS service {service.id} failed; the server log has "
                "the details.", None)]))
        return _json(200, {"cards": cards, "systemActions": []})

    @staticmethod
    def _only(request: MountRequest, method: str) -> None:
        if request.method != method:
            raise MethodNotAllowed(f"{request.path[:200]} answers {method} only.",
                                   expression="method", headers={"Allow": method})


def _json(status: int, body: object) -> MountResponse:
    return MountResponse(status, orjson.dumps(body))
