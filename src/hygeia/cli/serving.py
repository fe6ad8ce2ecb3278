"""Run the WSGI app on Granian, a Rust HTTP server.

Granian parses HTTP and manages connections in Rust and calls the app on its
own pool of Python threads, so a request costs no event-loop round trip
(docs/adr/0002).  On CPython it serves from worker processes forked off this
one (``--workers``, one by default), each also running background jobs; this
process only supervises.  The worker builds its own repository
after the fork (database connections must never cross a fork), and asks the
kernel to kill it when the supervisor dies, so ``kill -9`` of ``hygeia
serve`` stops the whole server at once, as it did when it was one process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.log import LogLevels
from granian.server import Server

from hygeia.cli.runtime import default_threads, tune_garbage_collector
from hygeia.server import Settings

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServeOptions:
    """What a worker needs to build the app; plain data, so it survives any start method."""

    db_url: str
    settings: Settings
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = field(default_factory=default_threads)
    access_log: bool = False
    workers: int = 1  # serving processes; each also runs background jobs


def run(options: ServeOptions) -> None:
    """Serve until interrupted (SIGINT/SIGTERM)."""
    server = Server(
        "hygeia", address=options.host, port=options.port, interface=Interfaces.WSGI,
        workers=options.workers, blocking_threads=options.threads, http=HTTPModes.http1,
        websockets=False, log_level=LogLevels.warning, log_access=options.access_log)
    server.serve(target_loader=_Loader(options), wrap_loader=False)


class _Loader:
    """Called once in each worker process to build the app it serves."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.supervisor = os.getpid()

    def __call__(self) -> Callable[..., Any]:
        from hygeia.api import create_app
        from hygeia.server import FhirService
        from hygeia.store import open_repository

        _die_with_parent(self.supervisor)
        repository = open_repository(self.options.db_url)
        service = FhirService(repository, self.options.settings)
        service.start_jobs()
        app = create_app(service)
        tune_garbage_collector()
        return app


def _die_with_parent(supervisor: int) -> None:
    """Have the kernel SIGKILL this worker the moment its supervisor exits (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:  # it died before the request above took effect
        os._exit(1)
