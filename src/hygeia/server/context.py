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
class Settings:
    """Server-wide settings that change behaviour (not transport)."""

    max_count: int = 1000
    default_count: int = 50
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
    # index extraction and transaction validation in a helper process (server/offload/helper.py);
    # worth it with a spare core, so ``hygeia serve`` turns it on there
    offload: bool = False
    # where job outputs (bulk export files) and files to import live; None: a new
    # temporary folder per service (tests, embedded use)
    files_dir: str | None = None
    export_file_bytes: int = 256 * 1024 * 1024  # a new output file after this size
    job_lease_seconds: float = 30.0  # a job whose worker stops renewing is freed after this
    job_keep_seconds: float = 24 * 3600.0  # outputs of finished jobs are deleted after this
    # SMART on FHIR: every request needs an access token (server/auth); ``hygeia serve``
    # turns it on with --auth, and always when it binds beyond loopback
    auth: bool = False
    # seals the server's private signing keys; None: a key for this process only
    secret_key_file: str | None = None
    access_token_seconds: int = 3600
    # an external OpenID Connect provider issues the tokens instead (server/auth/external.py)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None  # None: the FHIR base URL
    oidc_jwks_url: str | None = None  # None: from the issuer's openid-configuration
    refresh_token_seconds: int = 30 * 24 * 3600
    # outbound fetches made for a client (server/outbound.py: JWKS URLs, OIDC discovery):
    # addresses, networks or host names reachable although not public (loopback, private)
    outbound_allow: tuple[str, ...] = ()
    outbound_timeout_seconds: float = 5.0  # the whole fetch, connection to last byte
    outbound_max_bytes: int = 1024 * 1024  # the largest answer read
    # every read, search, write, export and auth event leaves an AuditEvent (server/audit)
    audit: bool = False
    # a response waits until its AuditEvent is committed, so a crash loses no record of an
    # answered request (False: recorded within milliseconds, but a crash can lose those)
    audit_durable: bool = True
    # search limits (fhir/search/query.py SearchLimits; docs/guide/search.md "Limits")
    max_search_values: int = 100  # comma-separated values of one search parameter
    max_chain_depth: int = 3  # reference steps in one chain or _has
    max_search_parameters: int = 100  # name=value pairs in one search request
    # _include/_revinclude resources added to one page of results: a 30-byte
    # ``_revinclude=*`` could otherwise answer with a whole database
    max_included: int = 1000
    # a database statement running longer is cancelled and answered 503 (0: no limit);
    # jobs (bulk export and import, reindex) get job_statement_timeout instead
    statement_timeout: float = 10.0
    job_statement_timeout: float = 600.0
    # the server root as clients reach it (scheme://host:port; the FHIR base is it + /fhir):
    # self links, Location, discovery and token audiences use it, never the Host header.
    # None: the HTTP server's own name and port (embedded use, tests)
    base_url: str | None = None
    # the HTTP front end (api/http): how long a client may take, and what it may hold
    http_header_timeout: float = 10.0  # seconds for the whole request head to arrive
    http_body_timeout: float = 30.0  # longest pause while a body arrives or a response leaves
    http_keepalive_timeout: float = 15.0  # an idle kept-alive connection is closed after this
    http_max_url_bytes: int = 16 * 1024  # longer request targets: 414
    http_max_header_bytes: int = 64 * 1024  # all header lines together; more: 431
    http_max_headers: int = 100  # header lines; more: 431
    http_max_client_connections: int = 32  # open connections per client address; more: 429
    http_max_connections: int = 1000  # open connections per serving process; more: 503
    http_max_buffered_bytes: int = 512 * 1024 * 1024  # request bodies held at once; more: 503
    # /metrics with authorization on: closed (403) unless True (scrapers carry no token)
    public_metrics: bool = False
    # apply pending schema migrations when the server starts (``hygeia serve --migrate``);
    # without it a database that needs them is refused (store/migrations)
    migrate: bool = False
    # local references must resolve on every write through the API, and a referenced
    # resource cannot be deleted unless with _cascade=delete (server/integrity.py)
    referential_integrity: bool = False


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
