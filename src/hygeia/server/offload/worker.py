"""The offload helper process: ``python -m hygeia.server.offload.worker IN OUT PARENT``.

Reads jobs from pipe ``IN`` and writes answers to pipe ``OUT`` (frames of
job id, length and a pickle), one at a time, in order.  Jobs:

- ``("extract", contents, parameters)``: the index rows of each stored
  resource (JSON bytes); ``parameters``, sent when the registry changed, are
  the custom search parameters in force from then on.
- ``("validate", body)``: the validation issues of a transaction Bundle's
  entries, with their locations, as the request thread would report them.

It ends when its input pipe closes, which happens when the process that
started it (``PARENT``) exits, however it exits.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any, BinaryIO

import orjson

from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.parameters import default_registry, default_registry_with
from hygeia.server.offload.helper import HEADER
from hygeia.server.offload.jobs import row_lists, validate_bundle


class Worker:
    def __init__(self) -> None:
        self.registry = default_registry()

    def run(self, job: tuple[Any, ...]) -> Any:
        if job[0] == "extract":
            _, contents, parameters = job
            if parameters is not None:
                self.registry = default_registry_with(parameters)
            return [row_lists(index_resource(orjson.loads(content), self.registry))
                    for content in contents]
        if job[0] == "validate":
            return validate_bundle(job[1])
        raise ValueError(f"unknown job {job[0]!r}")


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    worker = Worker()
    while True:
        header = source.read(HEADER.size)
        if len(header) < HEADER.size:
            return  # the parent closed the pipe: done
        ticket, size = HEADER.unpack(header)
        try:
            answer: tuple[str, Any] = ("ok", worker.run(pickle.loads(source.read(size))))
        except Exception as error:  # reported to the caller, who does the work inline
            answer = ("error", f"{type(error).__name__}: {error}")
        payload = pickle.dumps(answer, protocol=5)
        sink.write(HEADER.pack(ticket, len(payload)))
        sink.write(payload)
        sink.flush()


def main(argv: list[str]) -> None:
    source_fd, sink_fd, parent = int(argv[0]), int(argv[1]), int(argv[2])
    if os.getppid() != parent:
        return  # started for a process that is already gone
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    with os.fdopen(source_fd, "rb", buffering=1 << 20) as source, \
            os.fdopen(sink_fd, "wb", buffering=1 << 20) as sink:
        serve(source, sink)


if __name__ == "__main__":
    main(sys.argv[1:])
