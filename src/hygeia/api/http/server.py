"""The HTTP/1.1 front end of one serving process: an event loop, a socket, request threads.

The loop (uvloop when installed) accepts connections on a socket bound by
the supervisor (cli/serving.py) and runs one :class:`HttpConnection` per
client; whole requests go to a pool of ``threads`` threads running the WSGI
app.  docs/adr/0003 says why this replaced Granian.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading

from hygeia.api.http.connection import HttpConnection
from hygeia.api.http.front import FrontEnd, WsgiApp
from hygeia.api.http.limits import HttpLimits
from hygeia.api.http.wsgi import respond

log = logging.getLogger("hygeia.api.http")
SHUTDOWN_GRACE_SECONDS = 10.0  # requests in progress at SIGTERM get this long to finish


class RequestThreads:
    """``--threads`` threads that run the app; a plain queue feeds them.

    Not a ThreadPoolExecutor: its future, work item and pool bookkeeping cost
    the loop's thread time on every request, and nothing here waits on a result.
    """

    def __init__(self, front: FrontEnd, count: int) -> None:
        self.front = front
        self.queue = front.requests
        self.threads = [threading.Thread(target=self._run, name=f"hygeia-request-{number}",
                                         daemon=True) for number in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                respond(self.front, *item)
            except Exception:  # the loop is gone (shutdown): nothing left to answer on
                log.exception("a request thread failed")

    def stop(self) -> None:
        """Let each thread finish its request, then end (does not wait for them)."""
        for _ in self.threads:
            self.queue.put(None)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (measured faster, docs/adr/0003), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve_socket(listener: socket.socket, app: WsgiApp, limits: HttpLimits, *, base_url: str,
                 threads: int, access_log: bool = False, multiprocess: bool = False) -> None:
    """Serve on ``listener`` until SIGTERM or SIGINT, then finish the requests in progress."""
    if access_log:
        _log_access_to_stdout()
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    front = FrontEnd(loop, app, limits, base_url=base_url, access_log=access_log,
                     multiprocess=multiprocess)
    request_threads = RequestThreads(front, threads)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        loop.run_until_complete(_serve_until(front, listener, stop))
    finally:
        request_threads.stop()
        loop.close()


def _log_access_to_stdout() -> None:
    """``--access-log``: one line per request on standard output, apart from the log."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
    logger = logging.getLogger("hygeia.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


async def _serve_until(front: FrontEnd, listener: socket.socket, stop: asyncio.Event) -> None:
    server = await front.loop.create_server(lambda: HttpConnection(front), sock=listener,
                                            backlog=2048)
    await stop.wait()
    server.close()
    front.stopping = True
    for connection in list(front.connections):
        connection.close_if_idle()
    deadline = front.loop.time() + SHUTDOWN_GRACE_SECONDS
    while front.connections and front.loop.time() < deadline:
        await asyncio.sleep(0.05)
    for connection in list(front.connections):
        connection.abort()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 1.0)
