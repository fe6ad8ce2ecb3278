"""The audit trail: every request leaves an AuditEvent (``Settings.audit``).

Where each event is written decides what a crash can lose:

* a write's event is stored in the write's own transaction
  (:meth:`AuditTrail.written`, :meth:`AuditTrail.in_transaction`), so the
  write and its record commit together or not at all;
* every other event (reads, searches, operations, failures, sign-ins) goes
  through the :class:`~hygeia.server.audit.outbox.Outbox`, group-committed by
  one thread.  With ``Settings.audit_durable`` (the default) the request waits
  for that commit before answering, so no answered request goes unrecorded;
  a request whose event cannot be stored fails with 500 instead of answering.

A write that fails rolls back with its transaction, and the failure is then
recorded through the outbox.  AuditEvents are written by the server alone
(the API refuses to write them: :mod:`hygeia.server.rest.router`), so writing one
never produces another; reading the trail is audited like any read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from hygeia.fhir.datetime import now_us
from hygeia.fhir.outcome import FhirError, Issue
from hygeia.fhir.resources import new_id, stamp
from hygeia.fhir.search.index import index_resource
from hygeia.server.audit.describe import describe, describe_failure, describe_write
from hygeia.server.audit.events import (
    SUCCESS,
    What,
    Who,
    authentication_event,
    rest_event,
)
from hygeia.server.audit.outbox import Mover, Outbox
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.extensions import Operations
from hygeia.server.rest.router import Route, parse_route
from hygeia.store import Session, StoredVersion, as_sql, reading, writing
from hygeia.store import audit_outbox as outbox_table

if TYPE_CHECKING:
    from hygeia.server.extensions import Host
    from hygeia.server.rest.entries import Entry

log = logging.getLogger("hygeia.audit")

WAIT_SECONDS = 30.0  # longest a request waits for its AuditEvent's commit
# futures of the events of the request being handled on this thread (a batch's entries
# add theirs to the Bundle's list, which waits once for all of them)
_PENDING: ContextVar[list[Future[None]] | None] = ContextVar("hygeia_audit_pending",
                                                             default=None)


class AuditUnavailable(FhirError):
    """The request's AuditEvent could not be stored, so the request is not answered."""

    status = 500
    default_code = "exception"


class AuditTrail:
    """``service.audit``: records AuditEvents for the service's requests and sign-ins."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.enabled = host.settings.audit.enabled
        self.durable = host.settings.audit.durable
        self._outbox = Outbox(self._store_batch)
        self._mover = Mover(self._move)

    # ------------------------------------------------------------ requests

    def intercept(self, request: FhirRequest,
                  proceed: Callable[[FhirRequest], FhirResponse]) -> FhirResponse:
        """Run ``proceed(request)`` and record its outcome (see the module doc); the
        service registers the trail as an interceptor when auditing is on."""
        dispatch = proceed
        pending = _PENDING.get()
        if pending is not None:  # a batch entry: the Bundle's request waits for it
            return self._observed(request, dispatch, pending)
        with self._request_scope() as pending:
            return self._observed(request, dispatch, pending)

    def written(self, session: Session, route: Route, request: FhirRequest,
                response: FhirResponse, also: list[str] | None = None) -> None:
        """Store the AuditEvent of a write in its own transaction (``session``).

        ``also`` names other resources the write stored (its Provenance).
        """
        if not self.enabled:
            return
        what = describe_write(session, route, request, response, self._host.registry)
        what.references.extend(also or [])
        store_event(session, rest_event(_who(request), what, request.base_url))

    def in_transaction(self, session: Session, request: FhirRequest,
                       entries: list[Entry]) -> None:
        """The events of a transaction Bundle's entries, stored in its transaction."""
        if not self.enabled:
            return
        registry = self._host.registry
        for entry in entries:
            route, response = entry.route, entry.response
            assert response is not None
            sub = FhirRequest(entry.method, urlsplit(entry.url).path, entry.query,
                              base_url=request.base_url, access=request.access,
                              remote=request.remote)
            what = describe_write(session, route, sub, response, registry) if route.writes \
                else describe(route, sub, response, registry)
            store_event(session, rest_event(_who(request), what, request.base_url))

    def refused_entry(self, request: FhirRequest, raw: Any, error: FhirError) -> None:
        """A batch entry refused before it reached the service (bad or forbidden request)."""
        if not self.enabled:
            return
        asked = raw.get("request") if isinstance(raw, dict) else None
        asked = asked if isinstance(asked, dict) else {}
        url = urlsplit(str(asked.get("url") or ""))
        entry = FhirRequest(str(asked.get("method") or "").upper(), url.path,
                            parse_qsl(url.query, keep_blank_values=True),
                            base_url=request.base_url, access=request.access,
                            remote=request.remote)
        pending = _PENDING.get()
        self._queue(pending if pending is not None else [], entry, describe_failure(
            _route(entry, self._host.operations), entry, error.status, error.issues))

    # ------------------------------------------------------------ sign-ins and tokens

    def authentication(self, outcome: str, *, client_id: str | None = None,
                       username: str | None = None, remote: str | None = None,
                       description: str | None = None, event: str = "login",
                       patient: str | None = None, site: str = "") -> None:
        """Record a sign-in, a token issued or refused, or a revocation.

        ``outcome``: ``"0"`` success, ``"4"`` refused (bad password, unknown
        client, bad grant), ``"8"`` server failure; ``event``: ``"login"`` (a
        sign-in or a token request) or ``"logout"`` (a revocation);
        ``description`` says what happened (never a secret); ``site`` is the
        server's base URL.  Waits for the commit like any request when
        ``Settings.audit_durable`` (raising :class:`AuditUnavailable` if it
        fails); does nothing when auditing is off.
        """
        if not self.enabled:
            return
        who = Who(remote=remote, client_id=client_id, username=username)
        what = What(event, outcome=outcome, description=description,
                    patients=[patient] if patient else [])
        done = self._outbox.put(authentication_event(who, what, site))
        pending = _PENDING.get()
        if pending is not None:
            pending.append(done)
        else:
            self._settle([done])

    def auth_event(self, event: str, details: dict[str, Any]) -> None:
        """Record what the authorization server reports (``AuthServer.listeners``)."""
        outcome = "4" if event in ("token-refused", "login-failed") else "0"
        what = {"token-issued": "access token issued", "token-refused": "token refused",
                "login": "signed in and allowed the app", "login-failed": "sign-in refused",
                "token-revoked": "token revoked"}[event]
        extra = [f"{name} {details[name]}" for name in ("grant_type", "scope", "error")
                 if details.get(name)]
        self.authentication(
            outcome, client_id=details.get("client_id"), username=details.get("user"),
            remote=details.get("remote"), patient=details.get("patient"),
            description="; ".join([what, *extra]), site=details.get("site") or "",
            event="logout" if event == "token-revoked" else "login")

    def start(self) -> None:
        """Start moving events in the background (also those a stopped server left)."""
        if self.enabled:
            self._mover.wake()

    def catch_up(self) -> None:
        """Make every committed event searchable now (called before the trail is read)."""
        if self.enabled:
            self._mover.catch_up()

    def close(self) -> None:
        """Store the events still queued (a clean shutdown loses none)."""
        self._outbox.close()
        if self.enabled:
            self._mover.stop()

    # ------------------------------------------------------------ inside

    @contextmanager
    def _request_scope(self) -> Iterator[list[Future[None]]]:
        pending: list[Future[None]] = []
        token = _PENDING.set(pending)
        try:
            yield pending
        except BaseException:
            self._settle(pending, quiet=True)  # the request's own error wins
            raise
        finally:
            _PENDING.reset(token)
        self._settle(pending)

    def _observed(self, request: FhirRequest, dispatch: Callable[[FhirRequest], FhirResponse],
                  pending: list[Future[None]]) -> FhirResponse:
        try:
            response = dispatch(request)
        except FhirError as error:
            self._queue(pending, request, describe_failure(
                _route(request, self._host.operations), request, error.status, error.issues))
            raise
        except Exception:
            route = _route(request, self._host.operations)
            self._queue(pending, request, describe_failure(route, request, 500, [
                Issue("exception", "The server failed unexpectedly.")]))
            raise
        route = _route(request, self._host.operations)
        if route is not None and _audited_here(route):
            self._queue(pending, request, describe(route, request, response,
                                                   self._host.registry))
        return response

    def _queue(self, pending: list[Future[None]], request: FhirRequest, what: What) -> None:
        pending.append(self._outbox.put(rest_event(_who(request), what, request.base_url)))

    def _settle(self, pending: list[Future[None]], quiet: bool = False) -> None:
        """Wait until the events are committed (when durable); fail the request if not."""
        if not self.durable:
            return
        for done in pending:
            try:
                done.result(WAIT_SECONDS)
            except (Exception, FutureTimeout) as error:
                if quiet:
                    return
                raise AuditUnavailable("The request was not answered because its audit "
                                       f"record could not be stored: {error}.") from None

    def _store_batch(self, events: list[dict[str, Any]]) -> None:
        """One commit of plain outbox rows for the batch; not forced to disk at once (the
        next WAL flush or checkpoint does it within a fraction of a second), which is
        what makes waiting for it cheap: it survives a crash of this process, not a power
        cut in between.  The mover makes them resources later."""
        with writing(self._host.repository, flush_to_disk=False) as session:
            outbox_table.append(session, [orjson.dumps(event) for event in events])
        self._mover.wake()

    def _move(self, limit: int) -> int:
        """Turn up to ``limit`` outbox rows into AuditEvent resources, in one transaction."""
        with reading(self._host.repository) as session:  # cheap when there is nothing
            if not outbox_table.waiting(session):
                return 0
        with self._host.transaction(flush_to_disk=False) as session:
            contents = outbox_table.take(as_sql(session), limit,
                                         self._host.repository.dialect)
            for content in contents:
                store_event(session, orjson.loads(content))
        return len(contents)


def store_event(session: Session, event: dict[str, Any]) -> str:
    """Put one AuditEvent into ``session`` (the unguarded one: the API may not write them)."""
    id, recorded = new_id(), now_us()
    content = stamp(event, id, 1, recorded)
    rows = session.rows_later(event, content) if session.rows_later is not None else \
        index_resource(event, session.registry)
    session.put(StoredVersion("AuditEvent", id, 1, recorded, False, content, "POST", 0), rows)
    return id


def _audited_here(route: Route) -> bool:
    """Writes are audited in their transaction, Bundles by their entries, and the
    CapabilityStatement (public, no data) not at all."""
    return not route.writes and route.interaction not in ("bundle", "capabilities")


def _route(request: FhirRequest, operations: Operations) -> Route | None:
    try:
        return parse_route(request.method, request.path, request.query, operations)
    except FhirError:
        return None


def _who(request: FhirRequest) -> Who:
    return Who(access=request.access, remote=request.remote)


__all__ = ["SUCCESS", "AuditTrail", "AuditUnavailable", "store_event"]
