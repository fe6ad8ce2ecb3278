"""The declared extension points of the core: how a pillar plugs in without reaching in.

A pillar (devices, clinical services, insurance, imaging, analytics) is a
package in ring 3. It imports the public APIs of ``hygeia.fhir``,
``hygeia.store`` and ``hygeia.server`` and this module, and registers what it
adds on the running service at start-up; it never imports another pillar and
never writes SQL against the core's tables. docs/architecture.md shows a whole
pillar plugging in.

Declared here:

- :class:`Operation`: a FHIR operation (``$name``) at the system, type or
  instance level. One registration feeds the router (where it is offered,
  which methods), the scope guard (the session it runs in and the access it
  needs), the audit trail (its subtype, action and whether its request text
  is recorded) and the CapabilityStatement and OpenAPI document.
- :class:`OperationCall`: what an operation's handler receives.
- :class:`Host`: what a module may use of the running server (settings, search
  registry, operations, store sessions, jobs, files, and :class:`Alerts`, the core
  alerting service, ADR 0010). ``FhirService`` implements
  it; modules receive it and never import the service.
- :class:`WriteHook`: runs for every version stored, inside the write's own
  transaction, on every write path (REST interactions, batch and transaction
  entries, ``hygeia load``, ``$import``), on ``FhirService.write_hooks``.
- :class:`JobKind`, :class:`JobContext`, :class:`JobFailed`, :class:`JobStopped`:
  work that outlives a request, run by the job runner from a durable queue and
  resumable from checkpoints (``FhirService.job_kinds``).
- :class:`EventConsumer`, :class:`EventContext`: reads the durable change feed
  (every committed create, update and delete, in commit order) with a cursor of
  its own that survives crashes; run on a thread per consumer from
  ``start_jobs`` (``FhirService.event_consumers``, server/events, ADR 0008).
- :class:`Interceptor`: wraps every FHIR request (and each batch entry): the
  audit trail is one.
- :class:`Mount`, :class:`MountRequest`, :class:`MountResponse`: HTTP routes
  outside ``/fhir`` (``/cds-services``, ``/dicomweb``, the authorization
  server's ``/auth``), each with its own body limit, served by the same HTTP
  front end; transport-neutral, so a mount never sees WSGI.
- :class:`Listener`: a network listener that lives as long as the server
  (MLLP, MQTT, DICOM, websockets), started in the first serving process only,
  unless its pillar declares its :class:`ListenAddress`: ``hygeia serve`` then
  binds it before the fork and the listener serves in every serving process on
  the inherited socket (:class:`SharedListener`, MLLP, ADR 0029).
- :class:`Pillar`, :class:`PillarHost` and :class:`CliCommand`: how a pillar is
  found (the ``hygeia.pillars`` entry-point group), the serve flags it adds (its
  settings section, as ``Settings`` has one per core subsystem), what it registers
  at start-up, the ``hygeia`` subcommands it brings and its demo data.
- ``ResourceType`` (declared in :mod:`hygeia.fhir.spec.logical`, re-exported
  here): a resource type outside R4 (a logical model such as ViewDefinition),
  declared as data and named in the ``hygeia.resource_types`` entry-point group,
  so every process (serving, loader workers, offload helpers, CLI) knows it.
- Schema migrations: a pillar's tables are a stream of
  :class:`hygeia.store.Migration` steps registered with
  :func:`hygeia.store.register_stream` (docs/architecture.md, "Schema migrations").
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

from hygeia.fhir.spec.logical import ResourceType
from hygeia.server.events import EventConsumer, EventContext

if TYPE_CHECKING:
    from hygeia.fhir.search.parameters import SearchRegistry
    from hygeia.server.alerts.model import Alert, AlertState, Raised
    from hygeia.server.auth.access import Access
    from hygeia.server.context import FhirRequest, FhirResponse, Settings
    from hygeia.server.jobs.files import FileArea
    from hygeia.store import Job, JobStore, Repository, Session, StoredVersion

__all__ = [
    "Alerts",
    "CliCommand",
    "EventConsumer",
    "EventContext",
    "Host",
    "Interceptor",
    "JobContext",
    "JobFailed",
    "JobKind",
    "JobStopped",
    "ListenAddress",
    "Listener",
    "Mount",
    "MountRequest",
    "MountResponse",
    "Operation",
    "OperationCall",
    "Operations",
    "Pillar",
    "PillarHost",
    "ResourceType",
    "SharedListener",
    "WriteHook",
]

Level = Literal["system", "type", "instance"]
SessionKind = Literal["none", "read", "write"]


@dataclass(slots=True)
class OperationCall:
    """One invocation of an operation, as its handler sees it.

    ``session`` is open only when the operation asked for one (``session`` =
    ``read`` or ``write``); it is the request's session seen through the token's
    scopes, so a handler reads and writes only what the client may. A write
    session commits when the handler returns and rolls back when it raises.
    """

    host: Host
    request: FhirRequest
    resource_type: str | None
    id: str | None
    session: Session | None = None

    @property
    def level(self) -> Level:
        if self.resource_type is None:
            return "system"
        return "type" if self.id is None else "instance"


@dataclass(frozen=True, slots=True)
class Operation:
    """A FHIR operation this server offers, registered on ``FhirService.operations``.

    ``name`` is without the ``$`` (as the CapabilityStatement lists it). Where it
    is offered: ``system`` ([base]/$name), ``types`` ([type]/$name; ``None`` means
    every resource type) and ``instances`` ([type]/[id]/$name). ``methods`` are the
    HTTP methods it answers (HEAD follows GET).

    ``session`` is what the handler runs in: ``none`` (it opens what it needs, e.g.
    a job kick-off, or needs nothing), ``read`` (one consistent snapshot) or
    ``write`` (one transaction, shared with the request's AuditEvent). With a
    token, the session is guarded: ``access`` is the SMART cruds letter the token
    needs on what the handler touches, and ``filter_types`` makes a read across
    several types drop the types the token cannot read instead of refusing.

    The audit trail records it as a ``restful-interaction`` of ``operation`` with
    the subtype ``urn:hygeia:operation|{interaction}`` and the BALP action
    ``audit_action``; ``records_query`` keeps the request's URL and parameters as
    the query entity, ``starts_job`` links the event to the job it started, and
    ``reads_trail`` makes audit events pending in the outbox be stored first (an
    operation that can return AuditEvents).

    ``definition`` is the canonical URL of its OperationDefinition, or one per
    place it is offered (keys ``system`` or a resource type) when they differ.

    ``formats`` are the ``_format`` values (lower case: names such as ``csv`` and
    media types such as ``text/csv``) the handler answers itself, in formats of its
    own outside FHIR content negotiation (the rows of ``$viewdefinition-run``). The
    HTTP edge lets them through to the handler, which reads ``_format`` from the
    query; any other ``_format`` but JSON is still refused there with a 406.
    """

    name: str
    handler: Callable[[OperationCall], FhirResponse]
    definition: str | Mapping[str, str]
    system: bool = False
    types: frozenset[str] | None = frozenset()
    instances: frozenset[str] = frozenset()
    methods: tuple[str, ...] = ("POST",)
    session: SessionKind = "none"
    access: str = "s"
    filter_types: bool = False
    audit_action: str = "E"
    records_query: bool = True
    starts_job: bool = False
    reads_trail: bool = False
    documentation: str = ""
    interaction: str = field(default="")
    formats: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.interaction:  # how metrics and the audit trail name it
            object.__setattr__(self, "interaction", self.name)

    def offered_at(self, resource_type: str | None, instance: bool) -> bool:
        if resource_type is None:
            return self.system
        if instance:
            return resource_type in self.instances
        return self.types is None or resource_type in self.types

    def definition_at(self, target: str) -> str:
        """The OperationDefinition URL where it is offered on ``target`` (``system`` or a
        resource type)."""
        if isinstance(self.definition, str):
            return self.definition
        return self.definition.get(target) or next(iter(self.definition.values()))

    def where_offered(self) -> str:
        """Where it is offered, in words (for the 404 of a misplaced call)."""
        places = ["[base]"] if self.system else []
        if self.types is None:
            places.append("every [type]")
        else:
            places.extend(sorted(self.types))
        places.extend(f"{name}/[id]" for name in sorted(self.instances))
        return places[0] if len(places) == 1 else \
            f"{', '.join(places[:-1])} and {places[-1]}"


class Operations(Protocol):
    """Where operations are offered: resolves a ``$name`` called on a target."""

    def resolve(self, method: str, name: str, resource_type: str | None,
                instance: bool) -> Operation:
        """The operation, or a 404 (not offered there) / 405 (method) FhirError."""
        ...


class Alerts(Protocol):
    """Alerting, as a module uses it (``host.alerts``, server/alerts ``AlertService``):
    raising and clearing run in the caller's write transaction and never commit."""

    def raise_alert(self, session: Session, alert: Alert) -> Raised:
        """A Flag, a Task to acknowledge and a Communication to the care team, once
        while ``alert.key`` is active."""
        ...

    def clear_alert(self, session: Session, key: str) -> bool:
        """End the condition ``key``: Flag inactive, Task cancelled or completed."""
        ...

    def is_active(self, session: Session, key: str) -> bool:
        """Whether ``key`` has an active alert (a reader's session will do)."""
        ...

    def active_keys(self, session: Session, keys: Collection[str]) -> set[str]:
        """Those of ``keys`` with an active alert, in a search per few hundred keys
        (for a consumer that checks a whole batch of subjects)."""
        ...

    def read_alerts(self, session: Session, keys: Collection[str]) -> AlertState:
        """Lock ``keys`` and read which are active, for a consumer that then decides what
        to raise and clear and passes the state on (they lock and read nothing again)."""
        ...

    def raise_alerts(self, session: Session, alerts: Collection[Alert],
                     state: AlertState | None = None) -> list[Raised]:
        """``raise_alert`` for many keys at once, their Flags and Tasks read together."""
        ...

    def clear_alerts(self, session: Session, keys: Collection[str],
                     state: AlertState | None = None) -> set[str]:
        """``clear_alert`` for many keys at once; the keys that were active."""
        ...


class Host(Protocol):
    """The running server's shared parts, as modules see them."""

    settings: Settings
    registry: SearchRegistry  # search parameters, custom ones included
    repository: Repository
    jobs: JobStore
    files: FileArea

    @property
    def alerts(self) -> Alerts:
        """Raise and clear alerts (server/alerts, docs/guide/alerts.md)."""
        ...

    @property
    def operations(self) -> Operations:
        """The FHIR operations offered, core and pillar ones (to resolve a ``$name``)."""
        ...

    def reader(self) -> AbstractContextManager[Session]:
        """A read-only session that knows the registry."""
        ...

    def transaction(self, *, flush_to_disk: bool = True) -> AbstractContextManager[Session]:
        """A write transaction that knows the registry and runs the before-commit hooks."""
        ...

    def before_commit(self, hook: Callable[[Session], None]) -> AbstractContextManager[None]:
        """Within the block, run ``hook`` in every transaction this thread commits."""
        ...

    def wake_jobs(self) -> None:
        """Tell the job runner that a job was just queued."""
        ...


class JobStopped(Exception):
    """The job is no longer this worker's (cancelled, or taken over): stop quietly."""


class JobFailed(Exception):
    """A failure that retrying cannot fix (bad input found while running)."""


class JobContext(Protocol):
    """What a running job sees: its row, the host, its folder and the checkpoint call.

    A kind saves checkpoints through :meth:`checkpoint`; that is also where it
    learns that the job was cancelled (:class:`JobStopped`), and it is what lets
    another process resume the job from the last checkpoint after a crash. A kind
    must therefore make its work idempotent from a checkpoint: redoing the steps
    after it must not duplicate anything.
    """

    host: Host
    job: Job
    progress: dict[str, Any]  # the last checkpoint ({} on the first run)
    folder: Path  # the job's own folder for output files

    def checkpoint(self, progress: dict[str, Any]) -> None:
        """Save ``progress`` as the point to resume from (and renew the lease)."""

    def keep_alive(self) -> None:
        """Renew the lease during long work between checkpoints."""

    def since_checkpoint(self) -> float:
        """Seconds since the last checkpoint (or since the job started here)."""
        ...


class JobKind(Protocol):
    """One kind of background job, registered on ``FhirService.job_kinds`` under ``name``."""

    name: str

    def run(self, context: JobContext) -> dict[str, Any]:
        """Do the work (resuming from ``context.progress``); returns the job's result."""
        ...

    def completed(self, job: Job, request: FhirRequest) -> FhirResponse:
        """The status-endpoint answer for a completed job."""
        ...


class WriteHook(Protocol):
    """Called for each version stored, before it is written, inside its transaction.

    ``types`` are the resource types it wants (``None``: every type). It runs on
    every write path: the REST interactions, batch and transaction entries, ``hygeia
    load`` and ``$import``, in the session of the write (unguarded: the hook acts for
    the server, not the client). What it writes through ``session`` commits with the
    write; what it raises (a :class:`~hygeia.fhir.outcome.FhirError`) refuses the
    write and rolls the transaction back. ``version.deleted`` marks a deletion
    (``content`` is then None); the previous version is ``session.version(type, id,
    version.version - 1)``. A hook must not write the types it wants (it would be
    called for its own writes) and must be cheap for the bulk loader, which stores
    thousands of versions a second: do the heavy work in an ``EventConsumer`` of the
    change feed, after commit.
    """

    @property
    def types(self) -> frozenset[str] | None:
        """The resource types it wants (``None``: every type)."""
        ...

    def written(self, session: Session, version: StoredVersion) -> None:
        """React to ``version`` being stored in ``session``'s transaction."""


class Listener(Protocol):
    """A network listener that lives as long as the server (MLLP, MQTT, DICOM, websockets).

    ``hygeia serve`` starts the listeners after the service is built and before HTTP
    is served, and stops them when that process stops. By default a listener runs in
    the first serving process only: it binds its port in :meth:`start`, and with
    ``--workers N`` the other processes would find the port taken. A listener that
    can serve in every process is a :class:`SharedListener` whose pillar declares
    its address (:class:`ListenAddress`, ``Pillar.listen_addresses``): then the
    port is bound once by ``hygeia serve`` before the fork, each serving process
    hands its inherited copy to :meth:`SharedListener.adopt` before :meth:`start`,
    and the kernel spreads the connections over the processes' ``accept`` calls
    (one core's worth of Python each, ADR 0029).

    A listener serves on threads (or an event loop) of its own; it writes through the
    :class:`Host` it was built with, so its writes run the write hooks and reach the
    change feed like any other. ``start`` raises to refuse to start (the serving
    process then exits and ``hygeia serve`` with it, with the error).
    """

    name: str  # unique among the listeners: a ListenAddress names its listener by it

    def start(self) -> None:
        """Bind (or take the adopted socket) and begin serving; return once it accepts
        connections."""

    def stop(self) -> None:
        """Stop accepting, finish or drop what is in progress, release the port."""


class SharedListener(Listener, Protocol):
    """A :class:`Listener` that can serve in every serving process on one shared socket.

    Several processes accept on the same listening socket, so the listener must keep
    nothing that only one process may hold: its state per connection lives in the
    process that accepted it, and what must hold across connections (a message
    stored once, a duplicate recognised) must be guaranteed by the database (a lock
    or a unique key taken in the write transaction), never by the process's memory.
    Limits it counts (open connections) are then per process.
    """

    def adopt(self, server: socket.socket) -> None:
        """Serve on ``server``, bound and listening already (inherited from ``hygeia
        serve``), instead of binding in :meth:`start`. :meth:`stop` closes this
        process's copy only: it must not ``shutdown`` it, which would stop the
        socket for every process."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A TCP address a pillar's :class:`SharedListener` serves on in every serving process.

    ``listener`` is the listener's ``name``. ``hygeia serve`` binds ``host:port``
    before forking its serving processes (a port already taken is one ``error:``
    line at start, as for the HTTP port; port 0 takes any free port, the same for
    every process) and each serving process gives its copy to that listener's
    ``adopt``.
    """

    listener: str
    host: str
    port: int


class Interceptor(Protocol):
    """Wraps the handling of every FHIR request, outermost first in registration order.

    ``proceed(request)`` runs the rest of the chain and the interaction; an
    interceptor may look at the request and the response (or the error ``proceed``
    raised), time it, refuse it by raising a
    :class:`~hygeia.fhir.outcome.FhirError`, or answer it without proceeding. Each
    entry of a batch goes through the chain again; transaction entries do not (the
    transaction is one request). The audit trail is an interceptor
    (``AuditTrail.intercept``), registered when auditing is on.
    """

    def intercept(self, request: FhirRequest,
                  proceed: Callable[[FhirRequest], FhirResponse]) -> FhirResponse:
        """Handle ``request``, calling ``proceed`` to go on (at most once)."""
        ...


@dataclass(frozen=True, slots=True)
class MountRequest:
    """One HTTP request to a mount, read whole by the front end (within the mount's
    body limit) before a request thread takes it: in memory, or in a temporary file
    for a mount that spools its bodies."""

    method: str
    path: str  # from the mount's prefix on: "/cds-services/news2"
    query: list[tuple[str, str]]
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    root: str  # the server root clients use (--base-url), e.g. "https://fhir.example.org"
    remote: str | None = None
    access: Access | None = None  # the caller's verified token (mounts that require one)
    # a mount that ``spools_body``: the body in a temporary file (``body`` is then b""),
    # positioned at its start, with a descriptor (``fileno``) and ``body_size`` bytes
    body_file: BinaryIO | None = None
    body_size: int = 0


@dataclass(slots=True)
class MountResponse:
    """The answer: ``body`` is bytes, or an iterable of chunks to stream."""

    status: int
    body: bytes | Iterable[bytes] = b""
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class Mount(Protocol):
    """HTTP routes outside ``/fhir``, served by the same front end and processes.

    A mount answers each of its ``prefixes`` and every path below one. The front
    end refuses a body over ``max_body_bytes`` (``None``: the server's own
    ``--max-body-mb``) with 413 before reading it, so a mount's limit can be
    smaller or larger than the FHIR API's. With ``requires_token`` and
    authorization on, a request without a valid bearer token is refused (401)
    before ``handle`` runs, and ``request.access`` is the verified token; the mount
    checks scopes itself (e.g. DICOMweb needs ``ImagingStudy.rs``). A mount whose
    class sets ``spools_body = True`` (an optional attribute) has its bodies written to
    a temporary file as they arrive instead of held in memory, and counted against no
    buffered-bytes budget: ``request.body_file`` (DICOMweb STOW-RS, up to gigabytes). An error
    raised as a :class:`~hygeia.fhir.outcome.FhirError` is answered as an
    OperationOutcome; anything else is a logged 500.
    """

    @property
    def name(self) -> str: ...

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Paths it answers, each with everything below it: ``("/cds-services",)``."""
        ...

    @property
    def max_body_bytes(self) -> int | None: ...

    @property
    def requires_token(self) -> bool: ...

    def handle(self, request: MountRequest) -> MountResponse:
        """Answer one request."""
        ...


class PillarHost(Host, Protocol):
    """What a pillar's :meth:`Pillar.install` receives: the :class:`Host`, and where to
    register what the pillar adds."""

    def add_operation(self, operation: Operation) -> None: ...

    def add_write_hook(self, hook: WriteHook) -> None: ...

    def add_job_kind(self, kind: JobKind) -> None: ...

    def add_listener(self, listener: Listener) -> None: ...

    def add_mount(self, mount: Mount) -> None: ...

    def add_interceptor(self, interceptor: Interceptor) -> None: ...

    def add_event_consumer(self, consumer: EventConsumer) -> None: ...


class CliCommand(Protocol):
    """A ``hygeia`` subcommand a pillar brings (``hygeia view run ...``).

    Errors it raises go through the CLI's one error handler: a
    :class:`~hygeia.fhir.outcome.FhirError` or ``OSError`` is one ``error:`` line.
    """

    name: str
    help: str

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments (each with help text and its default)."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the command; the exit status."""
        ...


class Pillar(Protocol):
    """One pillar, found through the ``hygeia.pillars`` entry-point group.

    ``serve_options`` adds the pillar's own ``hygeia serve`` flags (its settings
    section: ``--mllp-port``, ``--dicom-port`` ...); ``install`` reads their values
    from ``options`` (the parsed flags, by destination name) and registers what the
    pillar adds on ``host``, once per serving process, before it takes requests;
    ``commands`` are its ``hygeia`` subcommands; ``demo`` extends ``hygeia serve
    --demo`` (called after ``install``, with the core's demo data loaded).

    A pillar with a :class:`SharedListener` also has ``listen_addresses(options,
    host)`` (an optional method; ``host`` is ``hygeia serve --host``): the
    :class:`ListenAddress` of each such listener its flags turn on, for ``hygeia
    serve`` to bind before the fork. It raises ``ValueError`` for a flag it refuses
    (one ``error:`` line). Its listeners without an address stay in the first
    serving process.
    """

    name: str

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        """Add this pillar's flags to ``hygeia serve`` (in a group named after it)."""

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        """Register operations, write hooks, job kinds and listeners on ``host``."""

    def commands(self) -> Sequence[CliCommand]:
        """The ``hygeia`` subcommands this pillar adds."""
        ...

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        """For ``hygeia serve --demo``: store this pillar's demo data (once: the database
        may hold it from an earlier start) and return lines that show a newcomer what to
        try, e.g. ready-to-paste ``curl`` commands against ``fhir_base``."""
        ...
