"""The FHIR service: routes a request to its interaction inside the right session."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest, Issue, operation_outcome
from hygeia.fhir.search.parameters import default_registry
from hygeia.fhir.validation import validate
from hygeia.server import read, search, write
from hygeia.server.audit import AuditTrail
from hygeia.server.auth.guard import guarded
from hygeia.server.auth.operations import check_bulk_write
from hygeia.server.auth.server import AuthServer
from hygeia.server.bulk_export import kick_off
from hygeia.server.bulk_import import ImportJob, kick_off_import
from hygeia.server.capability import capability_statement, with_security
from hygeia.server.context import FhirRequest, FhirResponse, Settings
from hygeia.server.custom_parameters import load_custom_parameters
from hygeia.server.events import (
    EventConsumer,
    EventRunner,
    EventTiming,
    registered_consumers,
)
from hygeia.server.export_job import ExportJob
from hygeia.server.job_status import cancel_job, job_file, job_status
from hygeia.server.jobs import FileArea, JobKind, JobRunner, JobTiming
from hygeia.server.offload import Offload
from hygeia.server.offload_jobs import IndexBatcher
from hygeia.server.openapi import openapi_document
from hygeia.server.provenance import store_provenance
from hygeia.server.reindex import ReindexJob, start_reindex
from hygeia.server.router import Route, parse_route
from hygeia.store.base import HistoryQuery, Repository, Session
from hygeia.store.jobs import JobStore
from hygeia.store.limits import StatementLimits, statement_limits

log = logging.getLogger("hygeia.server")


class FhirService:
    """Everything the HTTP edge (or the CLI) needs: ``handle(request) -> response``."""

    def __init__(self, repository: Repository, settings: Settings | None = None) -> None:
        self.repository = repository
        self.settings = settings or Settings()
        self._before_commit = threading.local()  # .hooks: this thread's, see before_commit
        self.registry = default_registry().copy()
        self._capabilities: tuple[int, dict[str, Any]] | None = None
        self._openapi: tuple[int, str, bytes] | None = None
        self.jobs = JobStore(repository)
        self.files = FileArea(Path(self.settings.files_dir) if self.settings.files_dir else None)
        # job kinds by name; a pillar registers its own here at start-up
        self.job_kinds: dict[str, JobKind] = {kind.name: kind
                                              for kind in (ExportJob(), ImportJob(),
                                                           ReindexJob())}
        self.runner: JobRunner | None = None
        # readers of the change feed, started with the jobs (server/events); a pillar
        # registers its own (events.register_consumer) or appends here before start_jobs
        self.event_consumers: list[EventConsumer] = registered_consumers()
        self.event_runners: list[EventRunner] = []
        # SMART on FHIR: Hygeia is its own authorization server (None when auth is off)
        self.auth = AuthServer(repository, self.settings) if self.settings.auth else None
        # the newest SearchParameter write seen, noted before loading them all, so one
        # written meanwhile by another process is picked up by the next refresh
        self._parameters_seen = self._newest_parameter_write()
        loaded = load_custom_parameters(repository, self.registry)
        if loaded:
            log.info("loaded %d custom search parameters", loaded)
        # two helpers, not one: rows are needed at flush and the verdict only at commit, so
        # extraction must not queue behind a whole Bundle's validation (measured: 0.77 of
        # pre-indexing ingest with one helper, 0.86 with two)
        self.extractor = Offload() if self.settings.offload else None
        self.validator = Offload() if self.settings.offload else None
        self.audit = AuditTrail(self)
        if self.auth is not None:
            self.auth.listeners.append(self.audit.auth_event)

    @contextmanager
    def transaction(self, *, flush_to_disk: bool = True) -> Iterator[Session]:
        """A write transaction whose session knows this service's search parameters
        (``flush_to_disk``: see :meth:`Repository.transaction`)."""
        with self.repository.transaction(flush_to_disk=flush_to_disk) as session:
            session.registry = self.registry
            if self.extractor is not None:
                session.rows_later = IndexBatcher(self.extractor, self.registry).rows_for
            yield session
            for hook in getattr(self._before_commit, "hooks", ()):
                hook(session)
        self.wake_events()

    @contextmanager
    def before_commit(self, hook: Callable[[Session], None]) -> Iterator[None]:
        """Within the block, call ``hook(session)`` at the end of every write transaction
        that this thread opens through :meth:`transaction`, just before it commits, so
        what the hook writes commits or rolls back with the transaction's own writes.

        Per thread: ``hygeia load`` records a Bundle's journal mark in the Bundle's
        transaction while its committer thread stores NDJSON batches that must not
        carry that mark.
        """
        previous = getattr(self._before_commit, "hooks", ())
        self._before_commit.hooks = (*previous, hook)
        try:
            yield
        finally:
            self._before_commit.hooks = previous

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self.repository.reader() as session:
            session.registry = self.registry
            yield session

    def request_limits(self) -> AbstractContextManager[None]:
        """The statement time limits of one client request (store/limits.py): reads stop
        after ``statement_timeout``, writes after ``job_statement_timeout``."""
        return statement_limits(StatementLimits(self.settings.statement_timeout,
                                                self.settings.job_statement_timeout))

    def handle(self, request: FhirRequest) -> FhirResponse:
        # a request's reads stop after statement_timeout; its writes may take as long as
        # a job's (a large transaction's inserts), store/limits.py
        with self.request_limits():
            if self.audit.enabled:
                return self.audit.observe(request, self._dispatch)
            return self._dispatch(request)

    def _dispatch(self, request: FhirRequest) -> FhirResponse:
        route = parse_route(request.method, request.path, request.query)
        if route.interaction == "capabilities":
            statement = self.capabilities()
            if self.auth is not None:
                origin = request.base_url.rstrip("/").removesuffix("/fhir")
                statement = with_security(statement, self.auth.smart_configuration(origin),
                                          request.base_url)
            return FhirResponse(200, resource=statement)
        if route.interaction == "openapi":
            return FhirResponse(200, raw=self.openapi(request.base_url),
                                media_type="application/json")
        if route.interaction == "validate":
            return validate_operation(request.body, route.resource_type or "")
        if self.audit.enabled and _may_read_the_trail(route, request):
            self.audit.catch_up()
        asynchronous = _ASYNC.get(route.interaction)
        if asynchronous is not None:
            return asynchronous(self, route, request)
        if route.interaction == "bundle":
            from hygeia.server.bundles import process_bundle

            return process_bundle(self, request)
        if route.writes:
            with self.transaction() as session:  # the write, its Provenance and AuditEvent
                response = self.perform(route, request, session)
                stored = store_provenance(session, route, request, response)
                self.audit.written(session, route, request, response, stored)
                return response
        with self.reader() as session:
            return self.perform(route, request, session)

    def patient_exists(self, patient_id: str) -> bool:
        with self.reader() as session:
            found = session.current("Patient", patient_id)
        return found is not None and not found.deleted

    def refresh_parameters(self) -> bool:
        """Pick up SearchParameters that another process wrote (True when something changed).

        Each serving process keeps its own registry, updated at once for its own
        writes; the job runner calls this every few seconds so that, with several
        processes on one database, a parameter written through one becomes
        searchable through all.
        """
        mark = self._newest_parameter_write()
        seen, self._parameters_seen = self._parameters_seen, mark
        if seen == mark:
            return False
        fresh = default_registry().copy()
        load_custom_parameters(self.repository, fresh)
        for parameter in self.registry.parameters():
            if fresh.by_url(parameter.url) is None:
                self.registry.remove(parameter.url)
        for parameter in fresh.parameters():
            if self.registry.by_url(parameter.url) != parameter:
                self.registry.add(parameter)
        return True

    def _newest_parameter_write(self) -> int:
        with self.repository.reader() as session:
            newest = session.history(HistoryQuery(resource_type="SearchParameter", count=1))
        return newest[0].seq if newest else 0

    def start_jobs(self, timing: JobTiming | None = None) -> JobRunner:
        """Run background jobs, and the audit trail's mover, on threads of this process
        (``hygeia serve`` does)."""
        if self.runner is None:
            self.runner = JobRunner(self, timing or self._timing())
            self.runner.start()
        self.audit.start()
        self.start_events()
        return self.runner

    def start_events(self, timing: EventTiming | None = None) -> None:
        """Run each event consumer on a thread of its own (once)."""
        if self.event_runners:
            return
        self.event_runners = [EventRunner(self, consumer, timing)
                              for consumer in self.event_consumers]
        for runner in self.event_runners:
            runner.start()

    def wake_events(self) -> None:
        """A write committed here: consumers look at the feed now, not at their next poll."""
        for runner in self.event_runners:
            runner.wake()

    def job_runner(self) -> JobRunner:
        """The runner, started or not (tests run jobs on their own thread with it)."""
        if self.runner is None:
            self.runner = JobRunner(self, self._timing())
        return self.runner

    def wake_jobs(self) -> None:
        if self.runner is not None:
            self.runner.wake()

    def _timing(self) -> JobTiming:
        return JobTiming(lease_seconds=self.settings.job_lease_seconds,
                         keep_seconds=self.settings.job_keep_seconds)

    def close(self) -> None:
        """Stop the event consumers, the job runner and the offload helpers (the repository
        is the caller's)."""
        for events in self.event_runners:
            events.stop()
        if self.runner is not None:
            self.runner.stop()
        self.audit.close()
        for helper in (self.extractor, self.validator):
            if helper is not None:
                helper.close()

    def capabilities(self) -> dict[str, Any]:
        """Rebuilt whenever a custom search parameter changed the registry."""
        if self._capabilities is None or self._capabilities[0] != self.registry.generation:
            statement = capability_statement(self.repository.dialect, self.registry)
            self._capabilities = (self.registry.generation, statement)
        return self._capabilities[1]

    def openapi(self, base_url: str) -> bytes:
        """The OpenAPI document as JSON, rebuilt only when the statement is."""
        statement = self.capabilities()
        generation = self.registry.generation
        if self._openapi is None or self._openapi[:2] != (generation, base_url):
            document = orjson.dumps(openapi_document(statement, base_url))
            self._openapi = (generation, base_url, document)
        return self._openapi[2]

    def perform(self, route: Route, request: FhirRequest, session: Session) -> FhirResponse:
        """Run one interaction in ``session`` (shared by HTTP requests and Bundle entries)."""
        kind = route.interaction
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise BadRequest(f"The interaction '{kind}' is not allowed here.",
                             code="not-supported")
        return handler(self, route, request, guarded(session, request.access, kind))


def _may_read_the_trail(route: Route, request: FhirRequest) -> bool:
    """Whether the request can return AuditEvents (all of them must be stored first)."""
    if route.resource_type == "AuditEvent":
        return True
    if route.interaction not in ("search-system", "history-system", "everything", "export"):
        return False
    types = {t for name, value in request.query if name == "_type" for t in value.split(",")}
    return not types or "AuditEvent" in types


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
    return read.read(session, _t(route), _i(route), if_none_match=request.if_none_match,
                     if_modified_since=request.if_modified_since, params=request.query)


def _vread(service: FhirService, route: Route, request: FhirRequest,
           session: Session) -> FhirResponse:
    return read.vread(session, _t(route), _i(route), route.version or "", request.query)


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
                       if_match=request.if_match, limits=write.patch_limits(service.settings))


def _conditional_patch(service: FhirService, route: Route, request: FhirRequest,
                       session: Session) -> FhirResponse:
    return write.conditional_patch(session, _t(route), route.criteria or "", request.body,
                                   content_type=request.content_type,
                                   base_url=request.base_url, if_match=request.if_match,
                                   limits=write.patch_limits(service.settings))


def _everything(service: FhirService, route: Route, request: FhirRequest,
                session: Session) -> FhirResponse:
    return search.everything(session, request, _i(route), service.settings)


def _export(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    level = {None: "system", "Patient": "patient", "Group": "group"}[route.resource_type]
    return kick_off(service, request, level, route.id)


def _import(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    check_bulk_write(request.access, "$import", "cu")
    return kick_off_import(service, request)


def _reindex(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    check_bulk_write(request.access, "$reindex", "u")
    return start_reindex(service, request, route.resource_type)


def _job_status(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    return job_status(service, _i(route), request)


def _job_cancel(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    return cancel_job(service, _i(route), request)


def _job_file(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    return job_file(service, _i(route), route.file or "", request)


# interactions that start or follow background work, outside any request transaction
_ASYNC = {
    "export": _export,
    "import": _import,
    "reindex": _reindex,
    "job-status": _job_status,
    "job-cancel": _job_cancel,
    "job-file": _job_file,
}


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
