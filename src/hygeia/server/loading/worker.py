"""A bulk-load worker process: ``python -m hygeia.server.loading.worker``.

Reads jobs from stdin and writes answers to stdout, one at a time, in order,
each a frame of a 4-byte length and a pickle.  A job is ``(generation,
parameters, lines)``: ``parameters`` (sent whenever the loader's search
registry changed, else None) are the custom search parameters in force from
then on; ``lines`` are (line number, raw NDJSON line) pairs.  The answer is
``(generation, prepared, errors)`` from
:func:`hygeia.server.loading.prepare.prepare_lines`.

Started with ``subprocess`` (fork and exec of a fresh interpreter), never a
bare fork, so it is safe to start from the threaded server.  It ends when its
stdin closes, which happens when the loader closes it or its process exits,
however it exits.
"""

from __future__ import annotations

import gc
import os
import pickle
from typing import IO

from hygeia.fhir.search.parameters import default_registry, default_registry_with
from hygeia.server.loading.frames import read_frame, write_frame
from hygeia.server.loading.prepare import prepare_lines

WORKER_NICENESS = 5


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    registry = default_registry()
    while (payload := read_frame(source)) is not None:
        generation, parameters, lines = pickle.loads(payload)
        if parameters is not None:
            registry = default_registry_with(parameters)
        prepared, errors = prepare_lines(lines, registry)
        # plain tuples: a named tuple unpickles through Python code, several times slower
        answer = (generation, [tuple(item) for item in prepared], errors)
        write_frame(sink, pickle.dumps(answer, protocol=5))


def main() -> None:
    # what start-up built stays out of the collector's reach; prepared lines are freed
    # by reference counting, so young passes over them are wasted work
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    # the loader's one writer is the load's critical path and the workers have jobs
    # queued ahead: when they compete for a core, the writer should win
    os.nice(WORKER_NICENESS)
    # answers get a private copy of stdout; anything else printed goes to stderr
    answers = os.fdopen(os.dup(1), "wb", buffering=1 << 20)
    os.dup2(2, 1)
    with os.fdopen(0, "rb", buffering=1 << 20) as jobs, answers:
        serve(jobs, answers)


if __name__ == "__main__":
    main()
