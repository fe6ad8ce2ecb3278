"""Request and response records passed between the HTTP edge and the use cases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from hygeia.fhir.datetime import format_instant

if TYPE_CHECKING:
    from hygeia.server.auth.access import Access


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """Search limits (fhir/search/query.py SearchLimits; docs/guide/search.md "Limits")."""

    max_count: int = 1000  # largest _count
    default_count: int = 50
    max_values: int = 100  # comma-separated values of one search parameter
    max_chain_depth: int = 3  # reference steps in one chain or _has
    max_parameters: int = 100  # name=value pairs in one search request
    # _include/_revinclude resources added to one page of results: a 30-byte
    # ``_revinclude=*`` could otherwise answer with a whole database
    max_included: int = 1000


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Background jobs (server/jobs) and where their files live."""

    # where job outputs (bulk export files) and files to import live; None: a new
    # temporary folder per service (tests, embedded use)
    files_dir: str | None = None
    export_file_bytes: int = 256 * 1024 * 1024  # a new output file after this size
    lease_seconds: float = 30.0  # a job whose worker stops renewing is freed after this
    keep_seconds: float = 24 * 3600.0  # outputs of finished jobs are deleted after this
    # a job's database statement running longer is cancelled (0: no limit); a request's
    # writes get it too (a large transaction's inserts)
    statement_timeout: float = 600.0


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """SMART on FHIR (server/auth): every request needs an access token when ``enabled``;
    ``hygeia serve`` turns it on with --auth, and always when it binds beyond loopback."""

    enabled: bool = False
    # seals the server's private signing keys; None: a key for this process only
    secret_key_file: str | None = None
    access_token_seconds: int = 3600
    refresh_token_seconds: int = 30 * 24 * 3600
    # an external OpenID Connect provider issues the tokens instead (server/auth/external.py)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None  # None: the FHIR base URL
    oidc_jwks_url: str | None = None  # None: from the issuer's openid-configuration


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """Fetches made for a client (server/outbound.py: JWKS URLs, OIDC discovery)."""

    # addresses, networks or host names reachable although not public (loopback, private)
    allow: tuple[str, ...] = ()
    timeout_seconds: float = 5.0  # the whole fetch, connection to last byte
    max_bytes: int = 1024 * 1024  # the largest answer read


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The audit trail (server/audit): every read, search, write, export and auth event
    leaves an AuditEvent when ``enabled``."""

    enabled: bool = False
    # a response waits until its AuditEvent is committed, so a crash loses no record of an
    # answered request (False: recorded within milliseconds, but a crash can lose those)
    durable: bool = True


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP front end (api/http): how long a client may take, and what it may hold."""

    header_timeout: float = 10.0  # seconds for the whole request head to arrive
    body_timeout: float = 30.0  # longest pause while a body arrives or a response leaves
    keepalive_timeout: float = 15.0  # an idle kept-alive connection is closed after this
    max_url_bytes: int = 16 * 1024  # longer request targets: 414
    max_header_bytes: int = 64 * 1024  # all header lines together; more: 431
    max_headers: int = 100  # header lines; more: 431
    max_client_connections: int = 32  # open connections per client address; more: 429
    max_connections: int = 1000  # open connections per serving process; more: 503
    max_buffered_bytes: int = 512 * 1024 * 1024  # request bodies held at once; more: 503
    # the address ``hygeia serve --host`` binds; pillars' listeners (MLLP) bind on it too
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Alerting (server/alerts, docs/guide/alerts.md): who hears of an alert nobody on the
    patient's care team can receive, and how soon an unacknowledged one escalates."""

    # seconds an alert's acknowledgement Task may stay unacknowledged before it escalates
    # (an Alert may set its own)
    escalate_after_seconds: float = 300.0
    # escalation steps at most (each raises the Task's priority one step, up to stat)
    max_escalations: int = 3
    # how often each serving process looks for overdue alerts written elsewhere (its own
    # raises wake it at once, and it sleeps no longer than until the next due time it knows)
    scan_seconds: float = 5.0
    # a reference ("Organization/ward-7", "PractitionerRole/on-call") told of an alert whose
    # patient has no active CareTeam (None: the alert is stored with no recipient)
    fallback_recipient: str | None = None
    # told of an escalation when no care-team participant has the escalation role (None:
    # the fallback recipient, else the care team again)
    escalation_recipient: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionSettings:
    """FHIR Subscriptions (server/subscriptions; docs/guide/subscriptions.md): how
    notifications are delivered, retried, and where the websocket channel listens."""

    # a rest-hook subscription turns to status error after this many failed deliveries
    # in a row (its notifications stay recorded; set it to requested to start again)
    max_failures: int = 5
    retry_seconds: float = 1.0  # the first retry's delay, doubling up to max_retry_seconds
    max_retry_seconds: float = 300.0
    poll_seconds: float = 1.0  # how often delivery looks for work beyond being woken
    ws_port: int | None = None  # the websocket channel's port (hygeia serve --ws-port)
    ws_host: str = "127.0.0.1"
    ws_url: str | None = None  # as clients reach it; None: ws://{ws_host}:{ws_port}
    token_seconds: int = 300  # a websocket binding token is valid this long
    max_events_replayed: int = 1000  # notification events one $events answer holds


@dataclass(frozen=True, slots=True)
class Settings:
    """Server-wide settings, a section per subsystem; the fields here bound every request.

    A pillar's own settings are its ``hygeia serve`` flags (server/extensions.Pillar).
    """

    max_body_bytes: int = 64 * 1024 * 1024
    # JSON values in one request body (api/app.py json_values_at_most): memory follows the
    # count of values more than the bytes; a 10,000-entry Synthea transaction has ~550,000
    max_json_values: int = 1_000_000
    # operations in one JSON Patch or FHIRPath Patch (the patched resource is bounded by
    # max_body_bytes); see fhir/patch/budget.py
    max_patch_operations: int = 1000
    # entries in one batch or transaction Bundle (413 beyond: larger loads use $import or
    # hygeia load); see server/rest/bundles.py
    max_bundle_entries: int = 10_000
    # a request's database statement running longer is cancelled and answered 503 (0: no
    # limit); jobs get jobs.statement_timeout instead
    statement_timeout: float = 10.0
    # index extraction and transaction validation in a helper process
    # (server/offload/helper.py); worth it with a spare core, so ``hygeia serve`` turns it on
    offload: bool = False
    # the server root as clients reach it (scheme://host:port; the FHIR base is it + /fhir):
    # self links, Location, discovery and token audiences use it, never the Host header.
    # None: the HTTP server's own name and port (embedded use, tests)
    base_url: str | None = None
    # /metrics with authorization on: closed (403) unless True (scrapers carry no token)
    public_metrics: bool = False
    # apply pending schema migrations when the server starts (``hygeia serve --migrate``);
    # without it a database that needs them is refused (store/migrations)
    migrate: bool = False
    # local references must resolve on create/update, and a referenced resource cannot be
    # deleted without _cascade=delete (server/rest/integrity.py, ADR 0007)
    referential_integrity: bool = False
    search: SearchSettings = field(default_factory=SearchSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    subscriptions: SubscriptionSettings = field(default_factory=SubscriptionSettings)


@dataclass(slots=True)
class FhirRequest:
    """One FHIR interaction, from HTTP or from a Bundle entry.

    ``path`` is relative to the FHIR base (``Patient/1/_history/2``);
    ``prefer_return`` is minimal, representation or OperationOutcome.
    """

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None
    base_url: str = ""
    content_type: str = "application/fhir+json"
    if_match: str | None = None
    if_none_match: str | None = None
    if_none_exist: str | None = None
    if_modified_since: str | None = None
    prefer_return: str | None = None
    prefer_strict: bool = False
    raw_body: bytes | None = None  # the JSON body as received, when there was one
    prefer_async: bool = False  # Prefer: respond-async
    prefer_lenient: bool = False  # Prefer: handling=lenient
    access: Access | None = None  # the verified access token; None when auth is off
    remote: str | None = None  # the client's network address, for the audit trail
    provenance: str | None = None  # the X-Provenance header (a Provenance as JSON)


@dataclass(slots=True)
class FhirResponse:
    """The outcome of an interaction.

    ``raw`` holds already-serialised JSON (stored resources are served as
    stored, without a parse/serialise round trip); ``resource`` a dict.
    """

    status: int
    resource: dict[str, Any] | None = None
    raw: bytes | None = None
    location: str | None = None
    version: int | None = None
    last_updated: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # a body too large to hold: sent chunk by chunk
    media_type: str | None = None  # when the body is not application/fhir+json

    @property
    def etag(self) -> str | None:
        return None if self.version is None else f'W/"{self.version}"'

    def body_dict(self) -> dict[str, Any] | None:
        if self.resource is not None:
            return self.resource
        return None if self.raw is None else orjson.loads(self.raw)

    def bundle_response(self) -> dict[str, Any]:
        """The ``entry.response`` element for a batch/transaction-response."""
        response: dict[str, Any] = {"status": str(self.status)}
        if self.location:
            response["location"] = self.location
        if self.version is not None:
            response["etag"] = self.etag
        if self.last_updated is not None:
            response["lastModified"] = format_instant(self.last_updated)
        return response


def bundle(kind: str, entries: list[dict[str, Any]], **elements: Any) -> dict[str, Any]:
    """A Bundle of ``kind``; ``entry`` is left out when empty (FHIR JSON forbids [])."""
    resource: dict[str, Any] = {"resourceType": "Bundle", "type": kind, **elements}
    if entries:
        resource["entry"] = entries
    return resource


MAX_VERSION_DIGITS = 18  # a version id this server issues fits a signed 64-bit integer


def parse_etag(value: str) -> int | None:
    """``W/"3"`` or ``"3"`` or ``3`` -> 3; None when it is not a version tag."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    return version_number(text.strip('"'))


def version_number(text: str) -> int | None:
    """A version id as this server issues them (1 to 18 ASCII digits) as a number, else None.

    Bounded before ``int``: Python refuses strings of over 4,300 digits, and the
    database column holds 64 bits.
    """
    if 0 < len(text) <= MAX_VERSION_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None
