"""What the parts of the HTTP front end share, and what they may ask of a connection.

``server.py`` builds a :class:`FrontEnd` and the connections; ``connection.py``
parses requests and hands them to :meth:`FrontEnd.serve`; ``wsgi.py`` runs the
app on a request thread and answers through the :class:`Connection` protocol.
None of them imports another's implementation, so the three form no cycle.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from queue import SimpleQueue
from typing import Any, Protocol
from urllib.parse import urlsplit

from hygeia.api.http.limits import ConnectionLedger, HttpLimits
from hygeia.api.http.request import Request

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Connection(Protocol):
    """One client connection, as the request threads and the shutdown see it."""

    client: str
    client_port: int
    closed: bool
    writable: threading.Event

    def finished(self, rest: list[bytes | memoryview], keep_alive: bool, reserved: int) -> None:
        """On the loop: send the rest of an answer and go on with the connection."""

    def finish_here(self, keep_alive: bool) -> bool:
        """From the request thread: end a fully written answer without waking the loop."""
        ...

    def send_now(self, pieces: list[bytes]) -> int:
        """From the request thread: write what the socket takes at once."""
        ...

    def write_chunk(self, data: bytes) -> None:
        """On the loop: write one piece of a streamed answer."""

    def abort(self) -> None:
        """Drop the connection now."""

    def close_if_idle(self) -> None:
        """Close the connection unless a request is in progress (shutdown)."""


class FrontEnd:
    """What every connection of this process shares: the app, the limits, the request
    queue that the request threads take whole requests from."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: WsgiApp, limits: HttpLimits, *,
                 base_url: str, access_log: bool = False,
                 multiprocess: bool = False) -> None:
        self.loop = loop
        self.app = app
        self.limits = limits
        self.ledger = ConnectionLedger(limits)
        self.connections: set[Connection] = set()
        self.requests: SimpleQueue[tuple[Connection, Request] | None] = SimpleQueue()
        self.access_log = access_log
        self.stopping = False
        root = urlsplit(base_url)
        self.environ_base: dict[str, Any] = {
            "SCRIPT_NAME": "", "SERVER_NAME": root.hostname or "localhost",
            "SERVER_PORT": str(root.port or (443 if root.scheme == "https" else 80)),
            "wsgi.version": (1, 0), "wsgi.url_scheme": root.scheme or "http",
            "wsgi.multithread": True, "wsgi.multiprocess": multiprocess, "wsgi.run_once": False}

    def serve(self, connection: Connection, request: Request) -> None:
        """Hand a whole request to a request thread (called on the loop)."""
        self.requests.put((connection, request))
