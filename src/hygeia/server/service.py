"""The FHIR service: routes a request to its interaction inside the right session."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from hygeia.fhir.outcome import BadRequest, FhirError
from hygeia.fhir.search.parameters import default_registry
from hygeia.server.alerts import AlertService
from hygeia.server.audit.trail import AuditTrail
from hygeia.server.auth.access import acting_as
from hygeia.server.auth.endpoints import AuthMount
from hygeia.server.auth.guard import guarded
from hygeia.server.auth.server import AuthServer
from hygeia.server.bulk.export_job import ExportJob
from hygeia.server.bulk.importing import ImportJob
from hygeia.server.context import FhirRequest, FhirResponse, Settings
from hygeia.server.events import (
    CommitSignals,
    EventConsumer,
    EventRunner,
    EventTiming,
    registered_consumers,
)
from hygeia.server.extensions import (
    Interceptor,
    JobKind,
    Listener,
    Mount,
    Operation,
    OperationCall,
    WriteHook,
)
from hygeia.server.jobs.files import FileArea
from hygeia.server.jobs.reindex import ReindexJob
from hygeia.server.jobs.run import JobTiming
from hygeia.server.jobs.runner import JobRunner
from hygeia.server.jobs.status import cancel_job, job_file, job_status
from hygeia.server.offload.helper import Offload
from hygeia.server.offload.jobs import IndexBatcher
from hygeia.server.rest.capability import capability_statement, with_security
from hygeia.server.rest.core_operations import core_operation_registry
from hygeia.server.rest.custom_parameters import SearchParameterHook, load_custom_parameters
from hygeia.server.rest.integrity import (
    IntegrityCheck,
)
from hygeia.server.rest.interactions import INTERACTIONS
from hygeia.server.rest.openapi import openapi_document
from hygeia.server.rest.provenance import RequestProvenance, request_provenance
from hygeia.server.rest.router import Route, parse_route
from hygeia.server.subscriptions.capability import with_topics
from hygeia.server.subscriptions.install import Subscriptions
from hygeia.server.write_hooks import WriteHooks
from hygeia.store import (
    HistoryQuery,
    JobStore,
    Repository,
    Session,
    StatementLimits,
    statement_limits,
)

log = logging.getLogger("hygeia.server")
_RESERVED_PATHS = frozenset({"/health", "/ready", "/metrics"})  # api/health.py, api/metrics.py


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
        files_dir = self.settings.jobs.files_dir
        self.files = FileArea(Path(files_dir) if files_dir else None)
        # job kinds by name; a pillar registers its own here at start-up
        self.job_kinds: dict[str, JobKind] = {kind.name: kind
                                              for kind in (ExportJob(), ImportJob(),
                                                           ReindexJob())}
        self.runner: JobRunner | None = None
        # raising, clearing and escalating alerts (server/alerts); escalates from start_jobs
        self.alerts = AlertService(self)
        # readers of the change feed, started with the jobs (server/events); a pillar
        # adds its own with add_event_consumer before start_jobs
        self.event_consumers: list[EventConsumer] = registered_consumers()
        self.event_runners: list[EventRunner] = []
        # what a ":"-word of another process's commit signal wakes (events/signals.py)
        self.signal_actions: dict[str, Callable[[], None]] = {}
        self._signals: CommitSignals | None = None
        # FHIR operations by name; a pillar registers its own here at start-up
        self.operations = core_operation_registry()
        # write hooks, called for each version stored on every write path; a pillar
        # registers its own here at start-up
        self.write_hooks = WriteHooks()
        self.write_hooks.register(SearchParameterHook())
        self.write_hooks.register(RequestProvenance())
        # network listeners of pillars, started by start_listeners (in the first serving
        # process, or in every one on a socket hygeia serve bound for it: ADR 0029)
        self.listeners: list[Listener] = []
        self._listening: list[Listener] = []
        # HTTP routes outside /fhir (the authorization server's, a pillar's)
        self.mounts: list[Mount] = []
        # SMART on FHIR: Hygeia is its own authorization server (None when auth is off)
        self.auth = AuthServer(repository, self.settings) if self.settings.auth.enabled else None
        # the newest SearchParameter write seen, noted before loading them all, so one
        # written meanwhile by another process is picked up by the next refresh
        self._parameters_seen = self._newest_parameter_write()
        loaded = load_custom_parameters(repository, self.registry)
        if loaded:
            log.debug("loaded %d custom search parameters", loaded)
        # two helpers, not one: rows are needed at flush and the verdict only at commit, so
        # extraction must not queue behind a whole Bundle's validation (measured: 0.77 of
        # pre-indexing ingest with one helper, 0.86 with two)
        self.extractor = Offload() if self.settings.offload else None
        self.validator = Offload() if self.settings.offload else None
        self.audit = AuditTrail(self)
        # wrap every request, outermost first (the audit trail, when it is on)
        self.interceptors: list[Interceptor] = []
        self._handler: Callable[[FhirRequest], FhirResponse] = self._dispatch
        if self.audit.enabled:
            self.add_interceptor(self.audit)
        if self.auth is not None:
            self.auth.listeners.append(self.audit.auth_event)
            self.add_mount(AuthMount(self.auth, self.patient_exists))
        # FHIR Subscriptions: acceptance hook, change-feed consumer, operations, the
        # websocket listener (--ws-port) and the rest-hook delivery thread (start_jobs)
        self.subscriptions = Subscriptions(self)

    @contextmanager
    def transaction(self, *, flush_to_disk: bool = True,
                    integrity: IntegrityCheck | None = None) -> Iterator[Session]:
        """A write transaction whose session knows this service's search parameters
        (``flush_to_disk``: see :meth:`Repository.transaction`); with ``integrity``
        (:meth:`integrity_check`), its writes' references are verified before commit."""
        with self.repository.transaction(flush_to_disk=flush_to_disk) as session:
            session.registry = self.registry
            session.on_put = self.write_hooks
            if self.extractor is not None:
                session.rows_later = IndexBatcher(self.extractor, self.registry).rows_for
            if integrity is not None:
                session.on_write = integrity.record
            yield session
            if integrity is not None:
                integrity.verify(session)
            for hook in getattr(self._before_commit, "hooks", ()):
                hook(session)
            written = session.written_types
        self.wake_events(None if written is None else frozenset(written))

    def write_turn(self) -> AbstractContextManager[None]:
        """The repository's writer's turn (:meth:`Repository.write_turn`)."""
        return self.repository.write_turn()

    def integrity_check(self, request: FhirRequest) -> IntegrityCheck | None:
        """A fresh check for one client write, when the server enforces referential
        integrity (loads, ``$import`` and the server's own records are not checked)."""
        if not self.settings.referential_integrity:
            return None
        return IntegrityCheck(request.base_url)

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
                                                self.settings.jobs.statement_timeout))

    def handle(self, request: FhirRequest) -> FhirResponse:
        # a request's reads stop after statement_timeout; its writes may take as long as
        # a job's (a large transaction's inserts), store/limits.py
        with self.request_limits(), acting_as(request.access):
            return self._handler(request)

    def add_event_consumer(self, consumer: EventConsumer) -> None:
        """Run ``consumer`` on the change feed from ``start_jobs`` on."""
        self.event_consumers.append(consumer)

    def add_interceptor(self, interceptor: Interceptor) -> None:
        """Wrap every request in ``interceptor``, inside those added before it."""
        self.interceptors.append(interceptor)
        self._handler = self._chain()

    def _chain(self) -> Callable[[FhirRequest], FhirResponse]:
        handler: Callable[[FhirRequest], FhirResponse] = self._dispatch
        for interceptor in reversed(self.interceptors):
            handler = partial(interceptor.intercept, proceed=handler)
        return handler

    def _dispatch(self, request: FhirRequest) -> FhirResponse:
        route = parse_route(request.method, request.path, request.query, self.operations)
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
        if self.audit.enabled and _may_read_the_trail(route, request):
            self.audit.catch_up()
        operation = route.operation
        if operation is not None and operation.session == "none":
            return operation.handler(OperationCall(self, request, route.resource_type, route.id))
        asynchronous = _ASYNC.get(route.interaction)
        if asynchronous is not None:
            return asynchronous(self, route, request)
        if route.interaction == "bundle":
            from hygeia.server.rest.bundles import process_bundle

            return process_bundle(self, request)
        if operation is not None and operation.session == "write":
            with self.transaction(integrity=self.integrity_check(request)) as session:
                return self.perform(route, request, session)
        if route.writes:  # the write, its Provenance (a write hook) and AuditEvent
            with request_provenance(request, route.resource_type) as provenance, \
                    self.transaction(integrity=self.integrity_check(request)) as session:
                response = self.perform(route, request, session)
                self.audit.written(session, route, request, response, provenance)
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
            self.runner = JobRunner(self, self.job_kinds, self.refresh_parameters,
                                    timing or self._timing())
            self.runner.start()
        self.audit.start()
        self.subscriptions.start()  # before the consumers: it makes sure of its cursor
        self.start_events()
        self.alerts.start()
        return self.runner

    def start_events(self, timing: EventTiming | None = None) -> None:
        """Run each event consumer on a thread of its own (once)."""
        if self.event_runners:
            return
        self.event_runners = [EventRunner(self, consumer, timing)
                              for consumer in self.event_consumers]
        for runner in self.event_runners:
            runner.start()
        if self.repository.commit_signals:
            self._signals = CommitSignals(self.repository, self.heard)
            self._signals.start()

    def heard(self, words: frozenset[str]) -> None:
        """Another process committed: wake the consumers of the types it wrote, and what
        its ``:``-words name (``signal_actions``); all of them when it did not say."""
        types = {word for word in words if not word.startswith(":")}
        if types or not words:
            self.wake_events(types or None)
        named = words - types if words else self.signal_actions.keys()
        for word in list(named):
            action = self.signal_actions.get(word)
            if action is not None:
                action()

    def wake_events(self, types: Collection[str] | None = None) -> None:
        """Versions of ``types`` (None: of any type) committed here: the consumers that
        want them look at the feed now, not at their next poll.

        Only those: a commit that wrote no version (a consumer's own cursor move, a
        delivery record) wakes none, and a consumer of other types moves past them a
        moment later (``EventTiming.skip_seconds``). Waking every runner on every commit
        made each read the feed's horizon and advance its cursor for nothing, hundreds
        of times a second under load.
        """
        if types is not None and not types:
            return
        for runner in self.event_runners:
            runner.notice(types)

    def job_runner(self) -> JobRunner:
        """The runner, started or not (tests run jobs on their own thread with it)."""
        if self.runner is None:
            self.runner = JobRunner(self, self.job_kinds, self.refresh_parameters,
                                    self._timing())
        return self.runner

    def wake_jobs(self) -> None:
        if self.runner is not None:
            self.runner.wake()

    def _timing(self) -> JobTiming:
        return JobTiming(lease_seconds=self.settings.jobs.lease_seconds,
                         keep_seconds=self.settings.jobs.keep_seconds)

    # ------------------------------------------------------------ what pillars register

    def own_formats(self, method: str, path: str) -> frozenset[str]:
        """The ``_format`` values the operation ``method path`` names answers itself
        (:attr:`Operation.formats`); none for any other request, or one that does not
        route (its error is answered when it is handled)."""
        try:
            route = parse_route(method, path, [], self.operations)
        except FhirError:
            return frozenset()
        return frozenset() if route.operation is None else route.operation.formats

    def add_operation(self, operation: Operation) -> None:
        self.operations.register(operation)
        self._capabilities = self._openapi = None  # both list the operations

    def add_write_hook(self, hook: WriteHook) -> None:
        self.write_hooks.register(hook)

    def add_job_kind(self, kind: JobKind) -> None:
        if kind.name in self.job_kinds:
            raise ValueError(f"The job kind {kind.name!r} is registered twice.")
        self.job_kinds[kind.name] = kind

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def add_mount(self, mount: Mount) -> None:
        taken = {prefix for other in self.mounts for prefix in other.prefixes}
        for prefix in mount.prefixes:
            inside_fhir = prefix == "/fhir" or (prefix.startswith("/fhir/") and
                                                not prefix.startswith("/fhir/.well-known/"))
            if not prefix.startswith("/") or prefix.endswith("/") or inside_fhir or \
                    prefix in _RESERVED_PATHS:
                raise ValueError(f"The mount {mount.name!r} cannot take {prefix!r}: a prefix "
                                 "starts with / and does not end with one, outside /fhir "
                                 "(but for .well-known) and the probes.")
            if prefix in taken:
                raise ValueError(f"The prefix {prefix} is mounted twice.")
        self.mounts.append(mount)

    def mount_for(self, path: str) -> Mount | None:
        """The mount that answers ``path`` (the longest prefix that matches), if any."""
        best: tuple[int, Mount | None] = (0, None)
        for mount in self.mounts:
            for prefix in mount.prefixes:
                if (path == prefix or path.startswith(prefix + "/")) and len(prefix) > best[0]:
                    best = (len(prefix), mount)
        return best[1]

    def start_listeners(self, inherited: Mapping[str, socket.socket] | None = None, *,
                        first: bool = True) -> None:
        """Start the registered listeners (``hygeia serve`` does); if one fails to start,
        those already started are stopped and the error is raised.

        ``inherited``: listening sockets ``hygeia serve`` bound before the fork, by
        listener name; that listener adopts its socket and serves in every process.
        The others start only in the ``first`` serving process (ADR 0029).
        """
        inherited = inherited or {}
        unclaimed = set(inherited) - {listener.name for listener in self.listeners}
        if unclaimed:  # its port would take connections that nobody answers
            raise RuntimeError(f"a ListenAddress names the listener {min(unclaimed)!r}, "
                               "which no pillar registered")
        for listener in self.listeners:
            server = inherited.get(listener.name)
            if server is None and not first:
                continue
            try:
                if server is not None:
                    _adopt(listener, server)
                listener.start()
            except Exception:
                self._stop_listeners()
                raise
            self._listening.append(listener)
            log.info("listener %s started", listener.name)

    def _stop_listeners(self) -> None:
        while self._listening:
            listener = self._listening.pop()
            try:
                listener.stop()
            except Exception:  # stopping the others matters more than this one's error
                log.exception("listener %s failed to stop", listener.name)

    def close(self) -> None:
        """Stop the listeners, the event consumers, the job runner and the offload helpers
        (the repository is the caller's)."""
        self._stop_listeners()
        self.subscriptions.stop()
        if self._signals is not None:
            self._signals.stop()
        for events in self.event_runners:
            events.stop()
        self.alerts.stop()
        if self.runner is not None:
            self.runner.stop()
        self.audit.close()
        for helper in (self.extractor, self.validator):
            if helper is not None:
                helper.close()

    def capabilities(self) -> dict[str, Any]:
        """Rebuilt whenever a custom search parameter changed the registry."""
        if self._capabilities is None or self._capabilities[0] != self.registry.generation:
            statement = with_topics(capability_statement(
                self.repository.dialect, self.registry, self.operations,
                self.settings.referential_integrity))
            self._capabilities = (self.registry.generation, statement)
        return self._capabilities[1]

    def openapi(self, base_url: str) -> bytes:
        """The OpenAPI document as JSON, rebuilt only when the statement is."""
        statement = self.capabilities()
        generation = self.registry.generation
        if self._openapi is None or self._openapi[:2] != (generation, base_url):
            document = orjson.dumps(openapi_document(statement, base_url, self.operations))
            self._openapi = (generation, base_url, document)
        return self._openapi[2]

    def perform(self, route: Route, request: FhirRequest, session: Session) -> FhirResponse:
        """Run one interaction in ``session`` (shared by HTTP requests and Bundle entries)."""
        kind = route.interaction
        operation = route.operation
        if operation is not None and operation.session != "none":
            return operation.handler(OperationCall(
                self, request, route.resource_type, route.id,
                guarded(session, request.access, kind, action=operation.access,
                        filter_types=operation.filter_types)))
        handler = INTERACTIONS.get(kind)
        if handler is None:
            raise BadRequest(f"The interaction '{kind}' is not allowed here.",
                             code="not-supported")
        return handler(self.settings, route, request, guarded(session, request.access, kind))


def _may_read_the_trail(route: Route, request: FhirRequest) -> bool:
    """Whether the request can return AuditEvents (all of them must be stored first)."""
    if route.resource_type == "AuditEvent":
        return True
    reads_trail = route.operation is not None and route.operation.reads_trail
    if not reads_trail and route.interaction not in ("search-system", "history-system"):
        return False
    types = {t for name, value in request.query if name == "_type" for t in value.split(",")}
    return not types or "AuditEvent" in types


def _job_status(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    return job_status(service, service.job_kinds, _i(route), request)


def _job_cancel(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    return cancel_job(service, _i(route), request)


def _job_file(service: FhirService, route: Route, request: FhirRequest) -> FhirResponse:
    return job_file(service, _i(route), route.file or "", request)


# a job's status, files and cancellation, outside any request transaction
_ASYNC = {
    "job-status": _job_status,
    "job-cancel": _job_cancel,
    "job-file": _job_file,
}


def _i(route: Route) -> str:
    assert route.id is not None
    return route.id


def _adopt(listener: Listener, server: socket.socket) -> None:
    """Hand ``server`` to a listener declared to serve in every process (a
    ``ListenAddress`` names it), which must be able to take it."""
    adopt = getattr(listener, "adopt", None)
    if adopt is None:
        raise RuntimeError(f"a ListenAddress names the listener {listener.name!r}, which "
                           "cannot serve on a shared socket (it has no adopt method)")
    adopt(server)
