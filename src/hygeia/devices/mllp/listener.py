"""The MLLP listener: HL7 v2 senders connect over TCP and get their acknowledgements.

A thread per connection, so a slow or stalled sender holds only its own
thread; the limits (``hygeia serve`` flags, :class:`MllpLimits`) keep a
hostile or broken peer from holding more:

- ``max_connections`` open connections; one more is closed at once;
- ``idle_timeout`` seconds without a byte closes a connection, and a message
  that has begun must end within the same time (a sender trickling a byte at a
  time cannot hold a thread for ever);
- ``max_message_bytes`` per message; a longer one is answered AR (ERR 207,
  naming the limit) and the connection closed, without reading it whole.

Messages on one connection are answered in order, each only after its data
committed (:mod:`.inbound`).

With ``hygeia serve --workers N`` the listener serves in every serving process
(a :class:`~hygeia.server.extensions.SharedListener`, ADR 0029): ``hygeia serve``
binds the port and each process accepts on its inherited copy (:meth:`MllpListener.adopt`),
so the limits above hold per process (``max_connections`` in each, N times it in
all). A message repeated on connections of two processes is still stored once: the
log's lock is taken in the database (:mod:`.inbound`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from datetime import UTC, datetime

from hygeia.devices.mllp.acks import Failure, Outcome, replies
from hygeia.devices.mllp.framing import FrameReader, Oversize, frame
from hygeia.devices.mllp.inbound import Arrival, Inbound, decode, parse
from hygeia.devices.mllp.limits import MllpLimits

log = logging.getLogger("hygeia.devices.mllp")
RECEIVE_BYTES = 64 * 1024


class MllpListener:
    """Serves MLLP on ``host:port`` (``port`` 0: any free port, see :attr:`port`)."""

    name = "mllp"

    def __init__(self, inbound: Inbound, host: str, port: int,
                 limits: MllpLimits | None = None) -> None:
        self.inbound = inbound
        self.host = host
        self.port = port
        self.limits = limits or MllpLimits()
        self._server: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"mllp://{self.host}:{self.port}"

    def adopt(self, server: socket.socket) -> None:
        """Accept on ``server``, a listening socket this process shares with the other
        serving processes, instead of binding the port in :meth:`start`."""
        self._server = server

    def start(self) -> None:
        """Bind (raising OSError when the port is taken) unless a socket was adopted, and
        accept on a thread."""
        if self._server is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self._server = socket.create_server((self.host, self.port), family=family)
        self.port = self._server.getsockname()[1]
        if self.inbound.commits is not None:
            self.inbound.commits.start()
        threading.Thread(target=self._accept, name="mllp-accept", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting and drop open connections (a message being processed finishes
        its transaction; its ACK is lost with the connection and the sender resends).

        Closing the listening socket closes this process's copy only; it is never shut
        down, which would stop it for the other processes sharing it."""
        self._stopping.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self.inbound.commits is not None:
            self.inbound.commits.stop()  # after committing what is queued

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                connection, address = self._server.accept()
            except OSError:
                return
            if self._stopping.is_set():  # accepted while stopping: the sender reconnects
                connection.close()
                return
            with self._lock:
                full = len(self._connections) >= self.limits.max_connections
                if not full:
                    self._connections.add(connection)
            if full:
                log.warning("MLLP: refused a connection from %s:%s (%d open, the limit)",
                            address[0], address[1], self.limits.max_connections)
                connection.close()
                continue
            threading.Thread(target=self._serve, args=(connection, address),
                             name=f"mllp-{address[0]}:{address[1]}", daemon=True).start()

    def _serve(self, connection: socket.socket, address: tuple[str, int]) -> None:
        peer = f"mllp://{address[0]}:{address[1]}"
        try:
            self._converse(connection, peer)
        except OSError:
            pass  # the peer went away, or timed out: nothing to answer
        except Exception:  # a bug: this connection ends, the listener goes on
            log.exception("MLLP: the connection from %s failed", peer)
        finally:
            with self._lock:
                self._connections.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def _converse(self, connection: socket.socket, peer: str) -> None:
        """Read blocks and answer them until the peer closes, idles or oversteps."""
        reader = FrameReader(self.limits.max_message_bytes)
        began = time.monotonic()
        while not self._stopping.is_set():
            connection.settimeout(self._timeout(reader, began))
            data = connection.recv(RECEIVE_BYTES)
            if not data:
                return
            was_inside = reader.inside
            blocks = reader.feed(data)
            if reader.inside and (blocks or not was_inside):
                began = time.monotonic()  # a message began in this chunk: its clock starts
            for block in blocks:
                if isinstance(block, Oversize):
                    connection.sendall(self._oversize_answer(block))
                    _linger(connection)
                    return
                arrival = Arrival(block, peer, self.endpoint, datetime.now(UTC))
                for ack in self.inbound.answer(arrival):
                    connection.sendall(frame(ack))

    def _timeout(self, reader: FrameReader, began: float) -> float:
        """Seconds the next read may wait: the idle timeout, or what is left of the time
        the unfinished message has to end."""
        if not reader.inside:
            return self.limits.idle_timeout
        left = self.limits.idle_timeout - (time.monotonic() - began)
        if left <= 0:
            raise TimeoutError("an MLLP message took too long to arrive")
        return left

    def _oversize_answer(self, block: Oversize) -> bytes:
        """AR for a message over the limit, echoing its MSH-10 when its head shows it."""
        limit = self.limits.max_message_bytes
        log.warning("MLLP: a message over %d bytes was refused", limit)
        message = parse(decode(block.head).rsplit("\r", 1)[0])
        failure = Failure(f"The message is longer than {limit} bytes, the most this server "
                          "accepts in one message.", "207", "MSH^1")
        ack = replies(message, Outcome("AR", False, failure, accepted=False), "oversize")
        return b"".join(frame(text.encode("utf-8")) for text in ack)


LINGER_SECONDS = 2.0


def _linger(connection: socket.socket) -> None:
    """Let the answer reach a peer still sending: closing with its bytes unread would
    reset the connection, and a reset can discard the answer before the peer reads it.
    So stop sending, then read and drop what still comes, for a short while at most."""
    connection.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + LINGER_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        connection.settimeout(left)
        if not connection.recv(RECEIVE_BYTES):
            return
