"""What one client may hold of a serving process, and for how long.

A connection costs no request thread until its request has arrived whole
(head and body, read by the event loop), so a slow or stalled client holds
only a connection slot, and only until a timeout.  The ledger counts those
slots per client address and per process, and the request bodies buffered in
memory, so neither many connections nor many large uploads can exhaust the
process.  docs/guide/server.md lists every limit with its flag.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hygeia.api.http.errors import ServiceUnavailable, TooManyRequests
from hygeia.fhir.outcome import FhirError
from hygeia.server import Settings


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The front end's limits, taken from :class:`Settings` (``http_*`` fields)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    max_url_bytes: int = 16 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 64 * 1024 * 1024
    max_client_connections: int = 32
    max_connections: int = 1000
    max_buffered_bytes: int = 512 * 1024 * 1024
    # (path prefix, body limit) of the mounts that set their own (server/extensions.Mount)
    body_limits: tuple[tuple[str, int], ...] = ()
    # path prefixes whose bodies are spooled to a temporary file, not held in memory
    # (mounts with ``spools_body``): they count against no buffered-bytes budget
    spool_prefixes: tuple[str, ...] = ()

    def spools(self, path: str) -> bool:
        """Whether the body of a request for ``path`` goes to a temporary file."""
        return any(path == prefix or path.startswith(prefix + "/")
                   for prefix in self.spool_prefixes)

    def body_limit(self, path: str) -> int:
        """The body limit of a request for ``path``: its mount's, else ``max_body_bytes``."""
        best, limit = 0, self.max_body_bytes
        for prefix, bytes_ in self.body_limits:
            if (path == prefix or path.startswith(prefix + "/")) and len(prefix) > best:
                best, limit = len(prefix), bytes_
        return limit

    @classmethod
    def from_settings(cls, settings: Settings,
                      body_limits: tuple[tuple[str, int], ...] = (),
                      spool_prefixes: tuple[str, ...] = ()) -> HttpLimits:
        largest = max([settings.max_body_bytes, *(limit for prefix, limit in body_limits
                                                  if prefix not in spool_prefixes)])
        return cls(header_timeout=settings.http.header_timeout,
                   body_timeout=settings.http.body_timeout,
                   keepalive_timeout=settings.http.keepalive_timeout,
                   max_url_bytes=settings.http.max_url_bytes,
                   max_header_bytes=settings.http.max_header_bytes,
                   max_headers=settings.http.max_headers,
                   max_body_bytes=settings.max_body_bytes,
                   max_client_connections=settings.http.max_client_connections,
                   max_connections=settings.http.max_connections,
                   body_limits=body_limits, spool_prefixes=spool_prefixes,
                   # one largest body held in memory always fits, whatever the setting says
                   max_buffered_bytes=max(settings.http.max_buffered_bytes, largest))


class ConnectionLedger:
    """Open connections per client address and in all, and body bytes held in memory.

    Used on the event loop's thread only, so it needs no lock.
    """

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.per_client: Counter[str] = Counter()
        self.total = 0
        self.buffered = 0

    def admit(self, client: str) -> FhirError | None:
        """Count a new connection in, or say why it is refused (it is then not counted)."""
        if self.total >= self.limits.max_connections:
            return ServiceUnavailable(
                f"The server holds its maximum of {self.limits.max_connections} connections; "
                "try again shortly.", headers={"Retry-After": "1"})
        if self.per_client[client] >= self.limits.max_client_connections:
            return TooManyRequests(
                f"{client} already holds {self.limits.max_client_connections} connections, "
                "the most one client address may open; reuse them or close some.",
                headers={"Retry-After": "1"})
        self.per_client[client] += 1
        self.total += 1
        return None

    def release(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]

    def reserve_body(self, size: int) -> FhirError | None:
        """Reserve ``size`` bytes of request body, or refuse when the process holds too much."""
        if self.buffered + size > self.limits.max_buffered_bytes:
            return ServiceUnavailable(
                f"The server is holding {self.buffered} bytes of request bodies, near its "
                f"{self.limits.max_buffered_bytes}-byte limit; try again shortly.",
                headers={"Retry-After": "5"})
        self.buffered += size
        return None

    def release_body(self, size: int) -> None:
        self.buffered -= size
