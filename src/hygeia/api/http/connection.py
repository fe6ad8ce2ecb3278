"""One client connection on the event loop: llhttp parses, limits answer, threads serve.

The loop reads every request whole (head and body) under the timeouts of
:class:`HttpLimits` before a request thread sees it, so a client that stalls
costs a connection slot for a few seconds and never a thread (issue 13 item 2).
Requests on one connection are served one at a time in order: reading pauses
once two complete requests wait behind the one a thread is serving, which is
what bounds pipelining.

Every error this layer finds itself (bad syntax, limits, timeouts) is answered
with an OperationOutcome; the connection is then closed gracefully (our side
first, the client's bytes drained for a moment), so the client reads the
answer instead of a reset.

States of a connection, and the deadline each one runs against::

    idle      no request begun        keep-alive timeout (the first: header timeout)
    head      request line/headers    header timeout, from the first byte
    body      body bytes arriving     body timeout, from the last bytes
    busy      a thread serves it      none (unless the client stops reading: body timeout)

A thread that has written its whole answer ends a keep-alive request itself
(:meth:`HttpConnection.finish_here`) when nothing else waits on the connection;
``state_lock`` makes that and the loop's own steps exclusive.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, BinaryIO, cast

import httptools

from hygeia.api.http.errors import (
    HeaderFieldsTooLarge,
    RequestTimeout,
    UriTooLong,
    error_answer,
)
from hygeia.api.http.host import is_valid_host
from hygeia.api.http.request import Request, framing, transfer_coding_error, version_error
from hygeia.fhir.outcome import BadRequest, FhirError, PayloadTooLarge

if TYPE_CHECKING:
    from hygeia.api.http.front import FrontEnd

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LINGER_SECONDS = 2.0  # how long the bytes of a refused request are drained before closing
# llhttp collects a header line before handing it over: a head this far over the limits
# is refused while it is still arriving, not after it has been collected whole
_HEAD_SLACK = 16 * 1024


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the error is on the connection."""


class HttpConnection(asyncio.Protocol):
    """The protocol object of one connection (see the module docstring for its states)."""

    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self.loop = front.loop
        self.limits = front.limits
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.client_port = 0
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request | FhirError] = deque()
        self.admitted = self.busy = self.closed = self.broken = self.lingering = False
        self.reading = True
        self.peer_done = False
        self.served_one = False
        self.write_paused = False
        self.paused_at = 0.0
        self.writable = threading.Event()
        self.writable.set()
        # a duplicate of the socket's descriptor, for answers a request thread writes itself
        # (it stays open until connection_lost, so the number cannot be reused meanwhile)
        self.direct_fd = -1
        self.direct_lock = threading.Lock()
        # guards busy/queue/in_message between the loop and a thread ending a request
        self.state_lock = threading.Lock()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.idle_since = 0.0
        self.error: FhirError | None = None
        # the request being parsed (reset by _new_message)
        self.in_message = self.head_done = self.has_body = self.pending_continue = False
        self.url: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.url_size = self.header_bytes = self.head_received = 0
        self.body_size = self.reserved = 0
        self.body_limit = self.limits.max_body_bytes  # this request's (its mount's)
        self.spool: BinaryIO | None = None  # the body's temporary file (spooling mounts)
        self.started = self.last_body = 0.0

    # -- connection events ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client, self.client_port = str(peer[0]), int(peer[1])
        self.idle_since = self.loop.time()
        refusal = self.front.ledger.admit(self.client)
        if refusal is not None:
            self._answer_and_close(refusal)
            return
        self.admitted = True
        self.front.connections.add(self)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            self.direct_fd = os.dup(sock.fileno())
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        with self.direct_lock:
            if self.direct_fd >= 0:
                os.close(self.direct_fd)
                self.direct_fd = -1
        self.writable.set()  # a thread waiting to write sees the connection gone
        if self.timer is not None:
            self.timer.cancel()
        if self.admitted:
            self.front.ledger.release(self.client)
            self.front.connections.discard(self)
        released = self.reserved + sum(
            item.reserved for item in self.queue if isinstance(item, Request))
        self.reserved = 0
        for item in self.queue:
            if isinstance(item, Request) and item.body_file is not None:
                item.body_file.close()
        self.queue.clear()
        self._drop_spool()
        self.front.ledger.release_body(released)

    def eof_received(self) -> bool:
        """The client sent everything it will: answer what is pending, then close."""
        with self.state_lock:
            self.peer_done = True
            return self.busy or bool(self.queue)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.paused_at = self.loop.time()
        self.writable.clear()
        self._rearm()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.writable.set()
        with self.state_lock:
            self._advance()

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.broken:
            return  # draining a refused request, or past a parse error
        with self.state_lock:
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # no protocol switch here: answer the request as HTTP/1.1, then close
            self.broken = True
            if self.queue and isinstance(self.queue[-1], Request):
                self.queue[-1].keep_alive = False
        except httptools.HttpParserError as problem:
            self.broken = True
            self.queue.append(self.error or BadRequest(
                f"The request is not valid HTTP/1.1: {_reason(problem)}."))
        else:
            if self.in_message and not self.head_done:
                self._count_head_bytes(len(data))
        self._advance()

    def _count_head_bytes(self, size: int) -> None:
        self.head_received += size
        limit = self.limits.max_url_bytes + self.limits.max_header_bytes + _HEAD_SLACK
        if self.head_received > limit:
            self.broken = True
            self.queue.append(HeaderFieldsTooLarge(
                f"The request head is over {limit} bytes.", expression="header"))

    # -- llhttp callbacks ---------------------------------------------------------

    def _new_message(self) -> None:
        self.in_message = True
        self.head_done = False
        self.url = []
        self.url_size = 0
        self.headers = []
        self.header_bytes = 0
        self.head_received = 0
        self.body = []
        self.body_size = 0
        self.reserved = 0
        self._drop_spool()
        self.has_body = False
        self.started = self.last_body = self.loop.time()
        self.pending_continue = False

    def on_message_begin(self) -> None:
        self._new_message()
        self._rearm()

    def on_url(self, fragment: bytes) -> None:
        self.url_size += len(fragment)
        if self.url_size > self.limits.max_url_bytes:
            self._refuse(UriTooLong(
                f"The request target is over {self.limits.max_url_bytes} bytes; send long "
                "searches as POST [base]/[type]/_search with the parameters in a form body."))
        self.url.append(fragment)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4
        if len(self.headers) > self.limits.max_headers:
            self._refuse(HeaderFieldsTooLarge(
                f"The request has more than {self.limits.max_headers} header lines.",
                expression="header"))
        if self.header_bytes > self.limits.max_header_bytes:
            self._refuse(HeaderFieldsTooLarge(
                f"The request's headers are over {self.limits.max_header_bytes} bytes.",
                expression="header"))

    def on_headers_complete(self) -> None:
        self.head_done = True
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._refuse(version_error(version))
        length, chunked, hosts, expect = framing(self.headers)
        if chunked is not None and chunked.strip().lower() != "chunked":
            self._refuse(transfer_coding_error(chunked))
        self._check_host(hosts, version)
        self.has_body = length is not None or chunked is not None
        if self.limits.body_limits or self.limits.spool_prefixes:  # a mount's own rules
            path = b"".join(self.url).split(b"?", 1)[0].decode("latin-1")
            self.body_limit = self.limits.body_limit(path)
            if self.limits.spools(path) and (length or chunked is not None):
                self.spool = tempfile.TemporaryFile(prefix="hygeia-body-")  # noqa: SIM115
        else:
            self.body_limit = self.limits.max_body_bytes
        if length is not None and length > self.body_limit:
            self._refuse(PayloadTooLarge(
                f"The body ({length} bytes) is over the {self.body_limit}-byte "
                "limit.", expression="Content-Length"))
        if expect is not None and expect.strip().lower() == "100-continue" and length != 0:
            self.pending_continue = True
            self._send_continue()
        self.last_body = self.loop.time()
        self._rearm()

    def _check_host(self, hosts: list[str], version: str) -> None:
        """HTTP/1.1 requires exactly one Host header, and it must be a host[:port]."""
        if version == "1.1" and len(hosts) != 1:
            self._refuse(BadRequest("An HTTP/1.1 request needs exactly one Host header "
                                    f"(this one has {len(hosts)}).", expression="Host"))
        if hosts and not is_valid_host(hosts[0]):
            self._refuse(BadRequest("The Host header is not a valid host[:port] "
                                    "(RFC 3986).", expression="Host"))

    def on_body(self, chunk: bytes) -> None:
        self.body_size += len(chunk)
        if self.body_size > self.body_limit:
            self._refuse(PayloadTooLarge(f"The body is over the {self.body_limit}-byte limit."))
        self.last_body = self.loop.time()
        if self.spool is not None:  # on disk (the page cache): no share of the memory budget
            self.spool.write(chunk)
            return
        # bytes are counted as they arrive, not as declared: a client that only
        # announces a large body holds no share of the process's budget
        self._reserve(len(chunk))
        self.body.append(chunk)
        self.last_body = self.loop.time()

    def on_message_complete(self) -> None:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        spool, self.spool = self.spool, None
        if spool is not None:
            spool.seek(0)
        self.queue.append(Request(
            self.parser.get_method().decode("ascii"), b"".join(self.url),
            self.parser.get_http_version(), self.headers, body,
            self.parser.should_keep_alive(), self.has_body, self.reserved, spool,
            self.body_size if spool is not None else 0))
        self.reserved = 0
        self.in_message = False
        self.pending_continue = False

    def _reserve(self, size: int) -> None:
        refusal = self.front.ledger.reserve_body(size)
        if refusal is not None:
            self._refuse(refusal)
        self.reserved += size

    def _drop_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()  # unnamed (TemporaryFile): closing frees the disk space
            self.spool = None

    def _refuse(self, error: FhirError) -> None:
        self.error = error
        raise _Refused(str(error))

    # -- serving ---------------------------------------------------------------------

    def _advance(self) -> None:
        """Serve the next complete request, or read on; called after every state change."""
        if self.closed or self.lingering:
            return
        while not self.busy and self.queue and not self.write_paused:
            item = self.queue.popleft()
            if isinstance(item, FhirError):
                self._answer_and_close(item)
                return
            self.busy = True
            self.front.serve(self, item)
        # reading goes on while a request is with a thread and one more waits: a client
        # that sends its next request the moment it has its answer costs no syscalls
        # here; a further one stops reading, which bounds pipelining
        if len(self.queue) > 1 or self.write_paused:
            self._pause_reading()
        else:
            self._resume_reading()
            if self.pending_continue:
                self._send_continue()
        self._rearm()

    def _send_continue(self) -> None:
        """``Expect: 100-continue``: tell the client to send its body, unless an earlier
        request's answer is still to come (the interim answer must not overtake it)."""
        if not self.busy and not self.queue and self.transport is not None:
            self.transport.write(CONTINUE)
            self.pending_continue = False

    def _pause_reading(self) -> None:
        if self.reading and self.transport is not None:
            self.transport.pause_reading()
            self.reading = False

    def _resume_reading(self) -> None:
        if not self.reading and self.transport is not None:
            self.transport.resume_reading()
            self.reading = True
            # a request begun before the pause gets its time again from now
            self.started = self.last_body = self.loop.time()

    def finish_here(self, keep_alive: bool) -> bool:
        """End a request from its thread, its answer fully written, without waking the
        loop; False when the loop has something to do (then :meth:`finished` must run).

        The common case of keep-alive traffic: one thread handoff less per request.
        """
        with self.state_lock:
            if self.queue or self.in_message or self.closed or self.peer_done or \
                    not keep_alive or self.front.stopping:
                return False
            self.busy = False
            self.served_one = True
            self.idle_since = time.monotonic()  # the clock of loop.time() (uvloop and asyncio)
            return True

    def finished(self, rest: list[bytes | memoryview], keep_alive: bool, reserved: int) -> None:
        """A thread is done with a request: send the rest of its answer (on the loop)."""
        with self.state_lock:
            self._finish(rest, keep_alive, reserved)

    def _finish(self, rest: list[bytes | memoryview], keep_alive: bool, reserved: int) -> None:
        self.front.ledger.release_body(reserved)
        self.busy = False
        if self.closed:
            return
        assert self.transport is not None
        if rest:
            self.transport.writelines(rest)
        self.served_one = True
        self.idle_since = self.loop.time()
        if self.in_message:  # begun while the thread worked: its time starts now
            self.started = self.last_body = self.idle_since
        if not keep_alive or self.front.stopping or (self.peer_done and not self.queue):
            self.transport.close()
            return
        self._advance()

    def send_now(self, pieces: list[bytes]) -> int:
        """Write what the socket takes at once, from a request thread; the bytes written.

        Saves the answer a trip through the loop (one thread handoff less on every
        request).  Only while the transport has nothing buffered: then nothing else
        writes to this connection until the thread reports back with :meth:`finished`,
        so the bytes cannot overtake or interleave with the loop's.
        """
        with self.direct_lock:
            if self.direct_fd < 0 or self.transport is None or \
                    self.transport.get_write_buffer_size():
                return 0
            try:
                return os.writev(self.direct_fd, pieces)
            except OSError:  # would block, or the client is gone: the loop finds out
                return 0

    def write_chunk(self, data: bytes) -> None:
        """Part of a streamed answer (on the loop); the thread waits until it may send more."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)
        if not self.write_paused or self.closed:
            self.writable.set()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close_if_idle(self) -> None:
        """Shutting down: close a connection that has no request in progress."""
        if not self.busy and not self.queue and self.transport is not None:
            self.transport.close()

    def _answer_and_close(self, error: FhirError) -> None:
        """Answer ``error`` and close: our side at once, theirs after a short drain."""
        assert self.transport is not None
        self.queue.clear()
        self.lingering = True
        self.transport.write(error_answer(error))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- deadlines ---------------------------------------------------------------------

    def _deadline(self) -> float | None:
        """When the current state runs out (see the module docstring); None: it does not."""
        limits = self.limits
        if self.write_paused:
            return self.paused_at + limits.body_timeout
        if self.lingering:
            return None
        if self.busy or self.queue:  # nothing runs out; look again later (a thread may
            return self.loop.time() + limits.keepalive_timeout  # end it without the loop)
        if not self.in_message:
            wait = limits.keepalive_timeout if self.served_one else limits.header_timeout
            return self.idle_since + wait
        if not self.head_done:
            return self.started + limits.header_timeout
        return self.last_body + limits.body_timeout

    def _rearm(self) -> None:
        """Make sure a timer fires no later than the current deadline.

        A timer that fires early just re-reads the deadline and sleeps again,
        so most state changes cost no timer operation at all.
        """
        deadline = self._deadline()
        if deadline is None or self.closed:
            return
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline

    def _on_timer(self) -> None:
        with self.state_lock:
            self._check_deadline()

    def _check_deadline(self) -> None:
        self.timer = None
        deadline = self._deadline()
        if deadline is None or self.closed:
            return
        if self.loop.time() < deadline:
            self._rearm()
            return
        self._expire()

    def _expire(self) -> None:
        assert self.transport is not None
        if self.write_paused:  # the client stopped reading its answer
            self.transport.abort()
        elif not self.in_message:  # an idle connection: close it quietly
            self.transport.close()
        elif not self.head_done:
            self._answer_and_close(RequestTimeout(
                f"The request head did not arrive within {self.limits.header_timeout:g} s."))
        else:
            self._answer_and_close(RequestTimeout(
                f"No body bytes arrived for {self.limits.body_timeout:g} s "
                f"({self.body_size} received)."))


def _reason(problem: Exception) -> str:
    text = str(problem).strip().rstrip(".") or type(problem).__name__
    return text[0].lower() + text[1:]
