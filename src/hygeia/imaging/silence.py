"""``--dicom-timeout`` as silence: a peer is aborted when no byte came for that long.

pynetdicom measures an association's network timeout from the last *complete*
PDU and reads a PDU with a blocking ``recv``. So, out of the box, a sender on a
slow link whose bytes keep coming is aborted once one PDU (up to the 64 KiB we
accept) takes longer than the timeout to arrive, while a peer that stops in the
middle of a PDU holds its association (and one of ``--dicom-max-associations``)
forever: the reading thread never returns to look at the timer.

:func:`watch_silence`, run as the association's connection opens (before its
reader starts), puts the accepted socket in a :class:`HeardSocket`: every
``recv`` that returns bytes restarts pynetdicom's idle timer, and a ``recv``
waits at most the timeout (then the connection closes: pynetdicom's "transport
connection closed" event). tests/imaging/test_scp_timing.py holds both.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hygeia.imaging.scp")


class HeardSocket(socket.socket):
    """A socket that calls :attr:`on_bytes` whenever ``recv`` returns data."""

    on_bytes: Callable[[], None] = staticmethod(lambda: None)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if data:
            self.on_bytes()
        return data


def watch_silence(assoc: Any, timeout: float) -> None:
    """Make ``assoc`` (an accepted pynetdicom association whose reader has not started)
    abort after ``timeout`` seconds without a byte, not without a whole PDU."""
    transport: Any = getattr(getattr(assoc, "dul", None), "socket", None)
    raw = getattr(transport, "socket", None)
    timer = getattr(assoc.dul, "_idle_timer", None)
    if not isinstance(raw, socket.socket) or timer is None or isinstance(raw, HeardSocket):
        log.warning("DICOM: cannot watch the association's socket (pynetdicom changed); "
                    "the timeout counts whole PDUs")
        return
    heard = HeardSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
    heard.settimeout(timeout)
    heard.on_bytes = timer.restart
    transport.socket = heard
