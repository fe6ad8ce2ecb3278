"""One guarded HTTP client for every request the server makes on a client's behalf.

A URL a client hands the server (a JWKS URL at registration; later rest-hook
endpoints and CDS ``fhirServer``) is the classic server-side request forgery
lever: fetched naively, it reads the cloud metadata service, an admin page
on loopback, or any host of the private network, and a slow or endless
answer ties up a worker.  So every outbound fetch goes through :func:`fetch`:

* only ``http`` and ``https``;
* every address the host name resolves to must be a public (global) one,
  unless the operator's allow-list (``--outbound-allow``) names it: loopback,
  link-local (169.254.169.254, the metadata service), private, shared,
  reserved, multicast and unspecified addresses are refused;
* the connection goes to an address that was checked, and the address the
  socket is actually connected to is checked again, so a DNS answer that
  changes between the check and the connection (DNS rebinding) gains nothing;
* a timeout on connecting and on each read, and a deadline for the whole
  fetch; a cap on the answer's size (refused as soon as it is exceeded, not
  after reading it all);
* redirects only to the same scheme, host and port, at most a few.

Failures raise :class:`OutboundRefused` with a sentence a client can be shown.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(Exception):
    """An outbound fetch that was refused or failed; the message says why."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """What outbound fetches may reach and how long and large they may be.

    ``allow`` holds what the operator lets the server reach although it is not
    public: IP addresses or networks (``127.0.0.1``, ``10.0.0.0/8``) and host
    names (``keys.internal``: whatever that name resolves to).
    """

    allow: tuple[str, ...] = ()
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_bytes: int = DEFAULT_MAX_BYTES
    networks: tuple[IPNetwork, ...] = field(init=False, default=())
    hosts: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        networks, hosts = [], set()
        for entry in self.allow:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        object.__setattr__(self, "networks", tuple(networks))
        object.__setattr__(self, "hosts", frozenset(hosts))

    def with_hosts(self, urls: Iterable[str | None]) -> OutboundPolicy:
        """This policy, also allowing the hosts of ``urls`` (ones the operator configured)."""
        names = [urlsplit(url).hostname for url in urls if url]
        return OutboundPolicy((*self.allow, *(name for name in names if name)),
                              self.timeout_seconds, self.max_bytes)

    def permits(self, host: str, address: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.hosts:
            return True
        if any(address in network for network in self.networks):
            return True
        return public(address)


@dataclass(frozen=True, slots=True)
class Answer:
    """A fetched answer: status, headers (names lower-case) and the whole body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise OutboundRefused("The answer is not JSON.") from None


def public(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet (not loopback, link-local, private,
    shared, reserved, multicast or unspecified); IPv4-mapped IPv6 as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def fetch(url: str, policy: OutboundPolicy, headers: dict[str, str] | None = None) -> Answer:
    """GET ``url`` under ``policy`` (with ``headers`` besides Accept and User-Agent, e.g.
    an Authorization a CDS Hooks call handed over); a 2xx answer, or
    :class:`OutboundRefused`. Redirects are followed on the same origin only, so the
    headers never reach another host."""
    deadline = time.monotonic() + policy.timeout_seconds
    origin = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        answer = _get_once(url, policy, deadline, headers or {})
        if answer.status not in _REDIRECTS:
            if not 200 <= answer.status < 300:
                raise OutboundRefused(f"{_shown(url)} answered HTTP {answer.status}.")
            return answer
        target = urljoin(url, answer.headers.get("location", ""))
        if _origin(target) != origin:
            raise OutboundRefused(f"{_shown(url)} redirects to another host, which is not "
                                  "followed.")
        url = target
    raise OutboundRefused(f"{_shown(url)} redirects more than {MAX_REDIRECTS} times.")


def post(url: str, body: bytes, headers: dict[str, str], policy: OutboundPolicy) -> Answer:
    """POST ``body`` to ``url`` under ``policy`` (no redirects followed: a rest-hook
    endpoint answers where it is); a 2xx answer, or :class:`OutboundRefused`."""
    answer = _request_once("POST", url, policy, time.monotonic() + policy.timeout_seconds,
                           body, headers)
    if not 200 <= answer.status < 300:
        raise OutboundRefused(f"{_shown(url)} answered HTTP {answer.status}.")
    return answer


def fetch_json(url: str, policy: OutboundPolicy) -> Any:
    return fetch(url, policy).json()


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{_shown(url)} is not an http or https URL.")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused(f"{_shown(url)} has an invalid port.") from None
    return scheme, parts.hostname.lower(), port


def _get_once(url: str, policy: OutboundPolicy, deadline: float,
              headers: dict[str, str]) -> Answer:
    return _request_once("GET", url, policy, deadline, None,
                         {"Accept": "application/json", "User-Agent": "hygeia", **headers})


def _request_once(method: str, url: str, policy: OutboundPolicy, deadline: float,
                  body: bytes | None, headers: dict[str, str]) -> Answer:
    scheme, host, port = _origin(url)
    addresses = _checked_addresses(host, port, policy)
    connection = _connection(scheme, host, port, addresses, policy,
                             max(0.1, deadline - time.monotonic()))
    try:
        return _exchange(connection, method, url, body, headers, policy, deadline)
    except (OSError, http.client.HTTPException) as error:
        raise OutboundRefused(f"Fetching {_shown(url)} failed: {error}.") from None
    finally:
        connection.close()


def _exchange(connection: http.client.HTTPConnection, method: str, url: str,
              body: bytes | None, headers: dict[str, str], policy: OutboundPolicy,
              deadline: float) -> Answer:
    """One request and its whole (capped) answer on ``connection``, open or not."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection.request(method, path, body=body, headers=headers)
    _acknowledge_at_once(connection.sock)
    response = connection.getresponse()
    answer_headers = {name.lower(): value for name, value in response.getheaders()}
    if response.status in _REDIRECTS:  # not read: the connection is not used again
        return Answer(response.status, answer_headers, b"")
    answer_body = _read_capped(connection, response, url, policy.max_bytes, deadline)
    response.close()  # read to its end: the connection may carry the next request
    return Answer(response.status, answer_headers, answer_body)


def _acknowledge_at_once(sock: socket.socket | None) -> None:
    """Acknowledge the answer's segments as they come (Linux; elsewhere nothing): a peer
    that writes its headers and its body apart, with Nagle's algorithm on (Python's
    http.server does), holds the body until its headers are acknowledged, which a kept
    connection's delayed acknowledgement postponed by 40 ms per request."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if sock is not None and quickack is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


Origin = tuple[str, str, int]
_CLOSED_BY_PEER = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class KeptConnections:
    """POSTs that keep each endpoint's connection open for the next one (HTTP keep-alive).

    Rest-hook delivery sends a subscription's notifications one after another to the
    same endpoint; a new TCP (and TLS) connection for each cost a handshake per
    notification on both sides. Every request still passes the policy as
    :func:`post` does: the host name is resolved and each address checked again, and
    a kept connection is used only when the address it is connected to is one of
    those just checked and the policy permits it (else it is closed and a new one is
    made to a checked address). So a policy that no longer allows the endpoint, or
    a name that now resolves elsewhere, never reaches it over an old connection.

    A kept connection the endpoint has closed meanwhile fails at once on reuse; that
    request is sent once more on a new connection (delivery is at least once anyway).
    Connections idle longer than ``idle_seconds`` are not reused, and at most ``most``
    endpoints keep one. One connection per endpoint at a time: a second thread posting
    to the same endpoint meanwhile opens its own, closed after use.
    """

    def __init__(self, idle_seconds: float = 30.0, most: int = 64) -> None:
        self.idle_seconds = idle_seconds
        self.most = most
        self._kept: dict[Origin, tuple[http.client.HTTPConnection, float]] = {}
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: dict[str, str],
             policy: OutboundPolicy) -> Answer:
        """As :func:`post` (a 2xx answer, or :class:`OutboundRefused`), keeping the
        connection open when the endpoint allows it."""
        deadline = time.monotonic() + policy.timeout_seconds
        origin = _origin(url)
        scheme, host, port = origin
        addresses = _checked_addresses(host, port, policy)
        connection = self._take(origin, addresses, policy)
        if connection is not None:
            try:
                return self._send(origin, connection, url, body, headers, policy, deadline)
            except _Stale:
                pass  # closed by the endpoint while kept: send it again on a new one
        connection = _connection(scheme, host, port, addresses, policy,
                                 max(0.1, deadline - time.monotonic()))
        try:
            return self._send(origin, connection, url, body, headers, policy, deadline)
        except _Stale as stale:
            raise OutboundRefused(f"Fetching {_shown(url)} failed: {stale.error}.") from None

    def close(self) -> None:
        """Close every kept connection (it may be used again: it opens new ones)."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for connection, _ in kept:
            connection.close()

    def _take(self, origin: Origin, addresses: list[IPAddress],
              policy: OutboundPolicy) -> http.client.HTTPConnection | None:
        """The kept connection to ``origin``, if it is fresh and still connected to one of
        the ``addresses`` just checked, which ``policy`` permits; else None."""
        with self._lock:
            kept = self._kept.pop(origin, None)
        if kept is None:
            return None
        connection, since = kept
        if connection.sock is not None and time.monotonic() - since < self.idle_seconds:
            try:
                peer = ipaddress.ip_address(str(connection.sock.getpeername()[0])
                                            .split("%")[0])
            except OSError:
                peer = None
            if peer is not None and peer in addresses and policy.permits(origin[1], peer):
                return connection
        connection.close()
        return None

    def _send(self, origin: Origin, connection: http.client.HTTPConnection, url: str,
              body: bytes, headers: dict[str, str], policy: OutboundPolicy,
              deadline: float) -> Answer:
        """POST on ``connection``, then keep it if the endpoint lets it stay open; raises
        :class:`_Stale` when the connection turned out closed before any answer."""
        if connection.sock is not None:
            connection.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            answer = _exchange(connection, "POST", url, body, headers, policy, deadline)
        except _CLOSED_BY_PEER as error:
            connection.close()
            raise _Stale(error) from None
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise OutboundRefused(f"Fetching {_shown(url)} failed: {error}.") from None
        except BaseException:
            connection.close()
            raise
        if answer.status in _REDIRECTS:
            connection.close()
        else:
            self._keep(origin, connection)
        if not 200 <= answer.status < 300:
            raise OutboundRefused(f"{_shown(url)} answered HTTP {answer.status}.")
        return answer

    def _keep(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
        if connection.sock is None:  # the endpoint closes after each answer (HTTP/1.0)
            connection.close()
            return
        with self._lock:
            previous = self._kept.pop(origin, None)
            self._kept[origin] = (connection, time.monotonic())
            oldest = next(iter(self._kept)) if len(self._kept) > self.most else None
            evicted = self._kept.pop(oldest) if oldest is not None else None
        for extra in (previous, evicted):
            if extra is not None:
                extra[0].close()


class _Stale(Exception):
    """A kept connection the endpoint had closed: nothing was answered on it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _checked_addresses(host: str, port: int, policy: OutboundPolicy) -> list[IPAddress]:
    """Every address ``host`` resolves to, all of which the policy must permit."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise OutboundRefused(f"The host {host} cannot be resolved: {error}.") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0])
                                   for info in infos))
    for address in addresses:
        if not policy.permits(host, address):
            raise OutboundRefused(f"{host} resolves to {address}, a loopback, link-local, "
                                  "private or reserved address this server does not fetch "
                                  "from (the operator can allow it with --outbound-allow).")
    if not addresses:
        raise OutboundRefused(f"The host {host} has no address.")
    return addresses


def _connection(scheme: str, host: str, port: int, addresses: list[IPAddress],
                policy: OutboundPolicy, timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPS(host, port, addresses, policy, timeout)
    return _PinnedHTTP(host, port, addresses, policy, timeout)


def _pinned_socket(host: str, port: int, addresses: list[IPAddress], policy: OutboundPolicy,
                   timeout: float) -> socket.socket:
    """A socket connected to one of the checked ``addresses`` (in the resolver's order),
    never to a name resolved again; the peer it reached is checked once more."""
    failure: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((str(address), port), timeout=timeout)
        except OSError as error:
            failure = error
            continue
        peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
        if not policy.permits(host, peer):
            sock.close()
            raise OutboundRefused(f"{host} connected to {peer}, which is not allowed.")
        # http.client sends a request's headers and body in two writes: on a kept-alive
        # connection Nagle's algorithm held the body back until the peer's delayed
        # acknowledgement of the headers (40 ms and more per request; measured 88 ms)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise failure or OSError(f"no address of {host} to connect to")


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to one checked address, with ``host`` in the Host header."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress],
                 policy: OutboundPolicy, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses, self._policy = addresses, policy

    def connect(self) -> None:
        self.sock = _pinned_socket(self.host, self.port, self._addresses, self._policy,
                                   self.timeout or DEFAULT_TIMEOUT_SECONDS)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to one checked address; the certificate is checked against ``host``."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress],
                 policy: OutboundPolicy, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._addresses, self._policy = addresses, policy

    def connect(self) -> None:
        sock = _pinned_socket(self.host, self.port, self._addresses, self._policy,
                              self.timeout or DEFAULT_TIMEOUT_SECONDS)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _read_capped(connection: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 url: str, limit: int, deadline: float) -> bytes:
    """The body, read a socket's worth at a time, each read bounded by what is left of
    the deadline: a server that drips one byte at a time is cut off at the deadline."""
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise OutboundRefused(f"{_shown(url)} answers {length} bytes, over the limit of "
                              f"{limit}.")
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OutboundRefused(f"{_shown(url)} did not answer in time.")
        if connection.sock is not None:
            connection.sock.settimeout(left)
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise OutboundRefused(f"{_shown(url)} answers more than {limit} bytes.")
        chunks.append(chunk)


def _shown(url: str) -> str:
    """A URL as quoted in messages: bounded, so a hostile URL cannot flood a log."""
    return url if len(url) <= 200 else url[:200] + "..."
