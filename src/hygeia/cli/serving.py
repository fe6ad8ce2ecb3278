"""``hygeia serve``: bind the port, fork the serving processes, supervise them.

This process binds the listening socket itself, without ``SO_REUSEPORT``, so
a port that is already taken (by another ``hygeia serve`` or anything else)
fails at once instead of two servers sharing it (issue 13 item 10).  So it does
for the ports of the pillars' shared listeners (their ``ListenAddress``: MLLP),
which then serve in every serving process, not the first alone (ADR 0029).  It
then forks ``--workers`` serving processes that inherit the sockets; each builds
its own repository after the fork (database connections must never cross a
fork), runs background jobs, and serves HTTP with Hygeia's own front end
(api/http, docs/adr/0003).  Each asks the kernel to kill it when the
supervisor dies, so ``kill -9`` of ``hygeia serve`` stops the whole server at
once; SIGINT or SIGTERM stops it gracefully (requests in progress finish).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hygeia.cli.runtime import (
    SERVE_SWITCH_INTERVAL_MS,
    default_threads,
    set_switch_interval,
    tune_garbage_collector,
)
from hygeia.server import Settings

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

    from hygeia.server.extensions import ListenAddress

_PR_SET_PDEATHSIG = 1
BACKLOG = 2048  # the kernel caps it at net.core.somaxconn
STOP_SECONDS = 20.0  # after SIGTERM, a serving process still running this long is killed
READY_SECONDS = 60.0  # the longest a serving process waits for the others to start


_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the one prometheus-client reads

@dataclass(frozen=True)
class ServeOptions:
    """What a worker needs to build the app; plain data, so it survives any start method."""

    db_url: str
    settings: Settings
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = field(default_factory=default_threads)
    access_log: bool = False
    log_format: str = "text"  # of the access log: "text" or "json" (one object a line)
    workers: int = 1  # serving processes; each also runs background jobs
    switch_interval_ms: float = SERVE_SWITCH_INTERVAL_MS  # the GIL's, in every worker
    # the installed pillars' serve flags, by pillar name (cli/pillars.py)
    pillar_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class ListenError(Exception):
    """The port cannot be bound; the message is the CLI's one ``error:`` line."""


def listen(host: str, port: int) -> socket.socket:
    """The listening socket for ``host:port``, or :class:`ListenError` when it is taken.

    ``SO_REUSEADDR`` only lets a restarted server reuse a port whose old
    connections linger in TIME_WAIT; it never lets two servers listen at once.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(BACKLOG)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise ListenError(f"{host}:{port} is already in use (is another hygeia serve "
                              "running?)") from None
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    listener.set_inheritable(True)
    return listener


def listen_shared(addresses: Sequence[ListenAddress]) -> dict[str, socket.socket]:
    """The listening socket of each shared listener's address, by listener name, or
    :class:`ListenError` (naming the listener) when one is taken; none stays open then."""
    bound: dict[str, socket.socket] = {}
    try:
        for address in addresses:
            if address.listener in bound:
                raise ListenError(f"two addresses for the {address.listener} listener")
            try:
                bound[address.listener] = listen(address.host, address.port)
            except ListenError as error:
                raise ListenError(f"{address.listener}: {error}") from None
    except ListenError:
        for server in bound.values():
            server.close()
        raise
    return bound


def run(options: ServeOptions, listener: socket.socket,
        shared: Mapping[str, socket.socket] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; 0 after a clean stop, 1 when a serving process died.

    ``shared``: the listening sockets of the shared listeners (:func:`listen_shared`),
    inherited by every serving process."""
    supervisor = os.getpid()
    shared = shared or {}
    ready = _start_together(options.workers, shared)
    with _shared_metrics(options.workers):
        workers = {_fork_worker(options, listener, shared, ready, supervisor,
                                first=index == 0)
                   for index in range(options.workers)}
        return _supervise(workers)


def _start_together(workers: int, shared: Mapping[str, socket.socket]) -> Barrier | None:
    """Where the serving processes meet before they accept on the shared sockets: the
    first one ready would otherwise take every connection waiting in the backlog, and
    senders that keep their connection (MLLP) would stay with it for good. None when
    there is nothing to share."""
    if workers < 2 or not shared:
        return None
    import multiprocessing

    return multiprocessing.get_context("fork").Barrier(workers)


def _wait_for_the_others(ready: Barrier | None) -> None:
    """Wait until every serving process is ready to accept, for READY_SECONDS at most
    (a process that fails to start stops the server anyway)."""
    if ready is not None:
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait(READY_SECONDS)


@contextlib.contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """With several serving processes, give them one folder for prometheus-client's
    multiprocess mode (api/metrics.py), so any of them answers a scrape with the sums
    of all; an operator's own PROMETHEUS_MULTIPROC_DIR wins.  Set before the fork:
    the workers import prometheus-client after it, and it reads the variable then."""
    if workers < 2 or os.environ.get(_METRICS_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="hygeia-metrics-")
    os.environ[_METRICS_ENV] = folder
    try:
        yield
    finally:
        del os.environ[_METRICS_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def _supervise(workers: set[int]) -> int:
    """Wait for the workers; on a signal, or when one dies on its own, stop them all."""
    stop_requested: list[float] = []
    code = 0

    def request_stop(signum: int, frame: object) -> None:
        if not stop_requested:
            stop_requested.append(time.monotonic())
            _signal_all(workers, signal.SIGTERM)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while workers:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if stop_requested and time.monotonic() - stop_requested[0] > STOP_SECONDS:
                _signal_all(workers, signal.SIGKILL)
            time.sleep(0.2)
            continue
        workers.discard(pid)
        if not stop_requested:
            print(f"error: serving process {pid} stopped unexpectedly "
                  f"({_describe(status)}); stopping the server", file=sys.stderr)
            code = 1
            request_stop(signal.SIGTERM, None)
    return code


def _signal_all(workers: set[int], signum: int) -> None:
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _fork_worker(options: ServeOptions, listener: socket.socket,
                 shared: Mapping[str, socket.socket], ready: Barrier | None, supervisor: int,
                 *, first: bool) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = _serve_in_worker(options, listener, shared, ready, supervisor, first=first)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve_in_worker(options: ServeOptions, listener: socket.socket,
                     shared: Mapping[str, socket.socket], ready: Barrier | None,
                     supervisor: int, *, first: bool) -> int:
    """One serving process: its own repository, service, pillars and jobs, the pillars'
    shared listeners on the inherited ``shared`` sockets (and, in the first process
    only, their other listeners), then HTTP until stopped."""
    from hygeia.api import create_app
    from hygeia.api.http import HttpLimits, serve_socket
    from hygeia.api.http.wsgi import log_access_as_json
    from hygeia.api.mounts import mount_body_limits, mount_spool_prefixes
    from hygeia.cli.pillars import install_pillars
    from hygeia.server import FhirService
    from hygeia.store import open_repository

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent(supervisor)
    set_switch_interval(options.switch_interval_ms)  # before any thread starts
    repository = open_repository(options.db_url)
    service = FhirService(repository, options.settings)
    try:
        install_pillars(service, options.pillar_options)
        app = create_app(service)  # registers the authorization server's mount
        limits = HttpLimits.from_settings(options.settings, mount_body_limits(service),
                                          mount_spool_prefixes(service))
        _allow_open_files(limits.max_connections + 256)
        _wait_for_the_others(ready)
        service.start_listeners(shared, first=first)
        service.start_jobs()
        tune_garbage_collector()
        if options.access_log and options.log_format == "json":
            log_access_as_json()
        serve_socket(listener, app, limits, base_url=options.settings.base_url or "",
                     threads=options.threads, access_log=options.access_log,
                     multiprocess=options.workers > 1)
    finally:
        service.close()
        repository.close()
    return 0


def _allow_open_files(wanted: int) -> None:
    """Raise this process's open-file limit towards ``wanted`` (one per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _die_with_parent(supervisor: int) -> None:
    """Have the kernel SIGKILL this worker the moment its supervisor exits (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:  # it died before the request above took effect
        os._exit(1)
