"""CPU work moved off the request thread into a helper process.

Python runs one thread at a time, and on the write path the request thread
is busy with database inserts for a large share of its time.  Search-index
extraction and transaction validation are pure functions of the resource
bytes, so a second process can do them on the other core while the request
thread stamps, rewrites references and inserts.

The helper (``python -m hygeia.server.offload.worker``) reads length-prefixed
pickled jobs from a pipe and answers in order.  Deliberately no helper
threads here (unlike ``concurrent.futures``): a thread that unpickles results
competes for the interpreter lock with the request thread, and measured
slower than doing the work inline.  Callers hold a lock only while writing a
job or reading answers; answers for other callers are kept until asked for.

If the helper dies, :class:`OffloadUnavailable` is raised and callers do the
work inline, so a crash costs speed, never data.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hygeia.offload")

HEADER = struct.Struct("<II")  # job id, payload length
_F_SETPIPE_SZ = 1031  # Linux: grow the pipes so answers never wait on an unread pipe
_PIPE_BYTES = 1 << 20


class OffloadUnavailable(RuntimeError):
    """The helper process is gone (or never started); do the work inline."""


class Offload:
    """One helper process and the pipes to it; safe to share between threads."""

    def __init__(self) -> None:
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        for fd in (to_child, child_out):
            _grow_pipe(fd)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hygeia.server.offload.worker", str(child_in),
             str(child_out), str(os.getpid())],
            pass_fds=(child_in, child_out))
        os.close(child_in)
        os.close(child_out)
        # buffered: a raw write may stop part-way (a signal) and would not say so loudly
        self._tx = os.fdopen(to_child, "wb", buffering=_PIPE_BYTES)
        self._rx = os.fdopen(from_child, "rb", buffering=_PIPE_BYTES)
        self._lock = threading.Lock()
        self._next_id = 0
        self._answers: dict[int, tuple[str, Any]] = {}
        self._broken = False
        self.generation_sent: int | None = None  # the state generation the helper holds

    @property
    def pid(self) -> int:
        return self._process.pid

    def submit(self, job: tuple[Any, ...], *, generation: int | None = None,
               state: Callable[[], Any] | None = None) -> int:
        """Queue ``job``; returns the ticket to pass to :meth:`result`.

        With ``generation``, the job gets one more item: ``state()`` when the helper
        last saw another generation, else None.  Decided under the lock, so jobs from
        concurrent transactions cannot leave the helper on an older state.
        """
        with self._lock:
            if generation is not None:
                fresh = generation != self.generation_sent
                job = (*job, state() if fresh and state is not None else None)
                self.generation_sent = generation
            payload = pickle.dumps(job, protocol=5)
            self._check()
            self._drain_ready()  # so the helper is never blocked writing while we write
            self._next_id += 1
            ticket = self._next_id
            try:
                self._tx.write(HEADER.pack(ticket, len(payload)))
                self._tx.write(payload)
                self._tx.flush()
            except OSError as error:
                self._fail(error)
            return ticket

    def result(self, ticket: int) -> Any:
        """The answer to ``ticket``, waiting for it; re-raises the helper's exception."""
        with self._lock:
            while ticket not in self._answers:
                self._check()
                self._read_one()
            status, value = self._answers.pop(ticket)
        if status == "error":
            raise RuntimeError(f"offloaded job failed: {value}")
        return value

    def result_or_none(self, ticket: int) -> Any:
        """The answer to ``ticket``, or None when the helper is gone or the job failed:
        the caller then does the work inline."""
        try:
            return self.result(ticket)
        except (OffloadUnavailable, RuntimeError):
            return None

    def close(self) -> None:
        with self._lock:
            self._broken = True
            self._tx.close()
            self._process.wait(10)
            self._rx.close()

    def _check(self) -> None:
        if self._broken:
            raise OffloadUnavailable("the offload helper process is not running")

    def _drain_ready(self) -> None:
        while select.select([self._rx], [], [], 0)[0]:
            self._read_one()

    def _read_one(self) -> None:
        try:
            header = self._rx.read(HEADER.size)
            if len(header) < HEADER.size:
                raise EOFError("the offload helper closed its pipe")
            ticket, size = HEADER.unpack(header)
            self._answers[ticket] = pickle.loads(self._rx.read(size))
        except (OSError, EOFError, pickle.UnpicklingError) as error:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        self._broken = True
        log.error("offload helper failed (%s); continuing with inline work", error)
        raise OffloadUnavailable(str(error)) from error


def _grow_pipe(fd: int) -> None:
    if sys.platform.startswith("linux"):
        # over /proc/sys/fs/pipe-max-size: the default size still works
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
