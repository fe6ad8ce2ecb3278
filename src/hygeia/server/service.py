"""The FHIR service: routes a request to its interaction inside the right session."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hygeia.fhir.outcome import BadRequest, Issue, information, operation_outcome
from hygeia.fhir.search.parameters import default_registry
from hygeia.fhir.validation import validate
from hygeia.server import read, search, write
from hygeia.server.capability import capability_statement
from hygeia.server.context import FhirRequest, FhirResponse, Settings
from hygeia.server.custom_parameters import load_custom_parameters
from hygeia.server.offload import Offload
from hygeia.server.offload_jobs import IndexBatcher
from hygeia.server.reindex import Reindexer
from hygeia.server.router import Route, parse_route
from hygeia.store.base import Repository, Session

log = logging.getLogger("hygeia.server")


class FhirService:
    """Everything the HTTP edge (or the CLI) needs: ``handle(request) -> response``."""

    def __init__(self, repository: Repository, settings: Settings | None = None) -> None:
        self.repository = repository
        self.settings = settings or Settings()
        self.registry = default_registry().copy()
        self._capabilities: tuple[int, dict[str, Any]] | None = None
        self.reindexer = Reindexer(self)
        loaded = load_custom_parameters(repository, self.registry)
        if loaded:
            log.info("loaded %d custom search parameters", loaded)
        # two helpers, not one: rows are needed at flush and the verdict only at commit, so
        # extraction must not queue behind a whole Bundle's validation (measured: 0.77 of
        # pre-indexing ingest with one helper, 0.86 with two)
        self.extractor = Offload() if self.settings.offload else None
        self.validator = Offload() if self.settings.offload else None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction whose session knows this service's search parameters."""
        with self.repository.transaction() as session:
            session.registry = self.registry
            if self.extractor is not None:
                session.rows_later = IndexBatcher(self.extractor, self.registry).rows_for
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self.repository.reader() as session:
            session.registry = self.registry
            yield session

    def handle(self, request: FhirRequest) -> FhirResponse:
        route = parse_route(request.method, request.path, request.query)
        if route.interaction == "capabilities":
            return FhirResponse(200, resource=self.capabilities())
        if route.interaction == "validate":
            return validate_operation(request.body, route.resource_type or "")
        if route.interaction == "reindex":
            job = self.reindexer.start((route.resource_type,) if route.resource_type else None)
            location = f"{request.base_url}$reindex/{job.id}"
            return FhirResponse(202, resource=information(
                f"Reindex started; poll {location} for progress."),
                headers={"Content-Location": location})
        if route.interaction == "reindex-status":
            return self.reindexer.status(route.id or "", request.base_url)
        if route.interaction == "bundle":
            from hygeia.server.bundles import process_bundle

            return process_bundle(self, request)
        if route.writes:
            with self.transaction() as session:
                return self.perform(route, request, session)
        with self.reader() as session:
            return self.perform(route, request, session)

    def close(self) -> None:
        """Stop the offload helpers (the repository belongs to the caller)."""
        for helper in (self.extractor, self.validator):
            if helper is not None:
                helper.close()

    def capabilities(self) -> dict[str, Any]:
        """Rebuilt whenever a custom search parameter changed the registry."""
        if self._capabilities is None or self._capabilities[0] != self.registry.generation:
            statement = capability_statement(self.repository.dialect, self.registry)
            self._capabilities = (self.registry.generation, statement)
        return self._capabilities[1]

    def perform(self, route: Route, request: FhirRequest, session: Session) -> FhirResponse:
        """Run one interaction in ``session`` (shared by HTTP requests and Bundle entries)."""
        kind = route.interaction
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise BadRequest(f"The interaction '{kind}' is not allowed here.",
                             code="not-supported")
        return handler(self, route, request, session)


def validate_operation(body: Any, resource_type: str) -> FhirResponse:
    """``$validate``: 200 with an OperationOutcome listing every issue found (or none)."""
    resource = body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters" \
            and resource_type != "Parameters":
        resource = next((p.get("resource") for p in body.get("parameter", [])
                         if isinstance(p, dict) and p.get("name") == "resource"), None)
    issues = validate(resource, resource_type)
    if not issues:
        issues = [Issue("informational", f"The {resource_type} is valid.",
                        severity="information")]
    return FhirResponse(200, resource=operation_outcome(issues))


def _read(service: FhirService, route: Route, request: FhirRequest,
          session: Session) -> FhirResponse:
    return read.read(session, _t(route), _i(route), if_none_match=request.if_none_match)


def _vread(service: FhirService, route: Route, request: FhirRequest,
           session: Session) -> FhirResponse:
    return read.vread(session, _t(route), _i(route), route.version or "")


def _search(service: FhirService, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    return search.search_type(session, request, _t(route), service.settings)


def _search_system(service: FhirService, route: Route, request: FhirRequest,
                   session: Session) -> FhirResponse:
    return search.search_system(session, request, service.settings)


def _search_compartment(service: FhirService, route: Route, request: FhirRequest,
                        session: Session) -> FhirResponse:
    return search.search_compartment(session, request, _t(route), _i(route),
                                     route.compartment_type or "", service.settings)


def _history(service: FhirService, route: Route, request: FhirRequest,
             session: Session) -> FhirResponse:
    return read.history(session, request, service.settings, route.resource_type, route.id)


def _create(service: FhirService, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    return write.create(session, _t(route), request.body, base_url=request.base_url,
                        if_none_exist=request.if_none_exist)


def _update(service: FhirService, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    return write.update(session, _t(route), _i(route), request.body,
                        base_url=request.base_url, if_match=request.if_match)


def _conditional_update(service: FhirService, route: Route, request: FhirRequest,
                        session: Session) -> FhirResponse:
    return write.conditional_update(session, _t(route), route.criteria or "", request.body,
                                    base_url=request.base_url, if_match=request.if_match)


def _delete(service: FhirService, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    return write.delete(session, _t(route), _i(route), if_match=request.if_match)


def _conditional_delete(service: FhirService, route: Route, request: FhirRequest,
                        session: Session) -> FhirResponse:
    return write.conditional_delete(session, _t(route), route.criteria or "")


def _patch(service: FhirService, route: Route, request: FhirRequest,
           session: Session) -> FhirResponse:
    return write.patch(session, _t(route), _i(route), request.body,
                       content_type=request.content_type, base_url=request.base_url,
                       if_match=request.if_match)


def _conditional_patch(service: FhirService, route: Route, request: FhirRequest,
                       session: Session) -> FhirResponse:
    return write.conditional_patch(session, _t(route), route.criteria or "", request.body,
                                   content_type=request.content_type,
                                   base_url=request.base_url, if_match=request.if_match)


def _everything(service: FhirService, route: Route, request: FhirRequest,
                session: Session) -> FhirResponse:
    return search.everything(session, request, _i(route), service.settings)


def _t(route: Route) -> str:
    assert route.resource_type is not None
    return route.resource_type


def _i(route: Route) -> str:
    assert route.id is not None
    return route.id


_HANDLERS = {
    "read": _read,
    "vread": _vread,
    "search-type": _search,
    "search-system": _search_system,
    "search-compartment": _search_compartment,
    "everything": _everything,
    "history-instance": _history,
    "history-type": _history,
    "history-system": _history,
    "create": _create,
    "update": _update,
    "conditional-update": _conditional_update,
    "delete": _delete,
    "conditional-delete": _conditional_delete,
    "patch": _patch,
    "conditional-patch": _conditional_patch,
}
