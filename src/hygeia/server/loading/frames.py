"""The framing on the pipes between the loader and its workers: a 4-byte length, then
the payload (a pickle).  Kept apart from the worker module so that importing the
loader never imports the module ``python -m`` runs as the worker."""

from __future__ import annotations

import struct
from typing import IO

FRAME = struct.Struct("<I")


def read_frame(source: IO[bytes]) -> bytes | None:
    """One frame's payload, or None at the end of the stream."""
    header = source.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    payload = source.read(size)
    if len(payload) < size:
        return None
    return payload


def write_frame(sink: IO[bytes], payload: bytes) -> None:
    sink.write(FRAME.pack(len(payload)))
    sink.write(payload)
    sink.flush()
