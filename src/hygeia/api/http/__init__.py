"""Hygeia's own HTTP/1.1 front end: asyncio + llhttp (httptools) before the WSGI app.

Modules, each one job::

    server      one serving process: loop, listening socket, request threads
    connection  one client connection: parsing, limits, deadlines, pipelining
    wsgi        a request thread: PEP 3333 environ, the app, the answer out
    limits      the limits and the ledger of connections and buffered bodies
    host        Host header syntax and --base-url
    errors      the OperationOutcome errors this layer answers itself

docs/adr/0003-own-http-front-end.md records why it replaced Granian.
"""

from hygeia.api.http.limits import HttpLimits
from hygeia.api.http.server import serve_socket

__all__ = ["HttpLimits", "serve_socket"]
