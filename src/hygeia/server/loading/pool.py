"""The loader's worker processes, and the pipes that feed them.

Each worker (:mod:`hygeia.server.loading.worker`) is a fresh interpreter
started with ``subprocess``, so starting one from the threaded server is safe
(no bare fork).  Jobs go to the worker with the fewest in flight; answers are
read in the order the jobs were submitted, so the writer sees lines in input
order.  At most ``depth`` jobs per worker are in flight, which bounds memory
however large the input.

Each worker has two small threads here: a feeder that writes the (already
pickled) jobs into its pipe, and a reader that collects its answers as raw
bytes.  Without them the loader could block writing a job into a full pipe
while that worker is blocked writing an answer the loader has not read yet;
and a worker whose answer waits in a full pipe while the loader commits a
batch would sit idle instead of preparing its next job.  Neither thread does
Python work beyond the read or write, which releases the interpreter lock, so
they do not compete with the writer; unpickling happens on the loader's own
thread, when it takes the answer.

A worker that dies costs speed, never data: its jobs still in flight, and
everything after, are prepared in the loader's own process.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable

from hygeia.fhir.search.parameters import SearchParameter
from hygeia.server.loading.frames import read_frame, write_frame
from hygeia.server.loading.prepare import LineError, Prepared
from hygeia.server.memory.allocator import worker_environment

log = logging.getLogger("hygeia.loading")

Lines = list[tuple[int, bytes]]
Answer = tuple[int, list[Prepared], list[LineError]]  # (registry generation, prepared, errors)


class _Worker:
    """One worker process, its feeder and reader threads, and what it has in flight."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hygeia.server.loading.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=worker_environment())
        self.in_flight = 0
        self.alive = True
        self.generation: int | None = None  # the registry generation it was last sent
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=target, name=f"hygeia-load-{name}",
                                          daemon=True)
                         for name, target in (("feeder", self._feed), ("reader", self._read))]
        for thread in self._threads:
            thread.start()

    def _feed(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while (payload := self._outbox.get()) is not None:
                write_frame(stdin, payload)
        except OSError:
            pass  # the worker is gone: its reader sees the pipe close
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while (payload := read_frame(stdout)) is not None:
                self._inbox.put(payload)
        except OSError:
            pass
        finally:
            self._inbox.put(None)  # the end: the worker exited (or was stopped)

    def send(self, payload: bytes) -> None:
        self.in_flight += 1
        self._outbox.put(payload)

    def receive(self) -> Answer | None:
        """The next answer, or None when the worker died."""
        self.in_flight -= 1
        payload = self._inbox.get() if self.alive else None
        if payload is None:
            if self.alive:
                log.error("load worker %d exited (status %s); preparing its lines here",
                          self.process.pid, self.process.poll())
            self.alive = False
            return None
        generation, prepared, errors = pickle.loads(payload)
        return generation, [Prepared._make(item) for item in prepared], errors

    def stop(self, kill: bool = False) -> None:
        self._outbox.put(None)
        if kill:
            self.process.kill()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for thread in self._threads:
            thread.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


class WorkerPool:
    """``count`` worker processes answering jobs in submission order."""

    def __init__(self, count: int, depth: int = 2) -> None:
        self._workers = [_Worker() for _ in range(count)]
        self._depth = depth
        self._order: deque[tuple[_Worker | None, Lines, int]] = deque()

    @property
    def full(self) -> bool:
        return len(self._order) >= len(self._workers) * self._depth

    @property
    def in_flight(self) -> int:
        return len(self._order)

    def submit(self, lines: Lines, generation: int,
               parameters: Callable[[], tuple[SearchParameter, ...]]) -> None:
        """Queue ``lines`` for the least busy worker (none left alive: prepared at
        :meth:`result` time, in this process)."""
        live = [worker for worker in self._workers if worker.alive]
        worker = min(live, key=lambda w: w.in_flight) if live else None
        if worker is not None:
            fresh = parameters() if worker.generation != generation else None
            worker.generation = generation
            worker.send(pickle.dumps((generation, fresh, lines), protocol=5))
        self._order.append((worker, lines, generation))

    def result(self, inline: Callable[[Lines], Answer]) -> Answer:
        """The answer to the oldest job; ``inline`` prepares it if its worker died."""
        worker, lines, _ = self._order.popleft()
        answer = worker.receive() if worker is not None else None
        return answer if answer is not None else inline(lines)

    def close(self, kill: bool = False) -> None:
        for worker in self._workers:
            worker.stop(kill)

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

