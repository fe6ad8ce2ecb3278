"""Slow and silent DICOM senders against a real ``hygeia serve --dicom-port``
(``--dicom-timeout 5`` in the fixture).

A sender whose bytes trickle in (never silent as long as the timeout) is received
in full, even when the whole C-STORE takes longer than the timeout, and other
associations are served meanwhile; one silent longer than the timeout is aborted
and leaves nothing stored. The trickle is made by a TCP relay between pynetdicom
(the sender) and the server that forwards the sender's bytes in small, delayed
pieces, or stops forwarding them.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE

from tests.imaging.conftest import AE_TITLE, DicomServer, make_instance, wait_for
from tests.imaging.test_scp import find_images

CT = "1.2.840.10008.5.1.4.1.1.2"
TIMEOUT = 5.0  # the fixture's --dicom-timeout


class Relay:
    """Forwards one TCP connection to ``port``: the server's bytes at once, the
    sender's in pieces of ``piece`` bytes ``delay`` seconds apart, and none after the
    first ``stall_after`` bytes (the sender then looks silent to the server)."""

    def __init__(self, port: int, *, piece: int = 1 << 20, delay: float = 0.0,
                 stall_after: int | None = None) -> None:
        self.target, self.piece, self.delay, self.stall_after = port, piece, delay, stall_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarded = 0
        self.server_closed_at: float | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()
        self._up(client, upstream)

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                for start in range(0, len(data), self.piece):
                    if self.stall_after is not None and self.forwarded >= self.stall_after:
                        break  # swallow: the server hears nothing more
                    chunk = data[start:start + self.piece]
                    time.sleep(self.delay)
                    upstream.sendall(chunk)
                    self.forwarded += len(chunk)
        except OSError:
            pass

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        self.server_closed_at = time.monotonic()
        for end in (client, upstream):
            end.close()


def store(port: int, path: Path, result: dict[str, Any]) -> None:
    """C-STORE ``path`` to ``port`` with pynetdicom; ``result`` gets the status."""
    ae = AE(ae_title="SLOWSCU")
    ae.add_requested_context(CT)
    ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    result["established"] = assoc.is_established
    if assoc.is_established:
        status = assoc.send_c_store(pydicom.dcmread(path))
        result["status"] = getattr(status, "Status", None)
        assoc.release()
    result["aborted"] = assoc.is_aborted


def test_a_slow_sender_is_received_and_does_not_hold_up_others(
        dicom: DicomServer, tmp_path: Path) -> None:
    slow_path = make_instance(tmp_path, PatientID="SLOW")
    size = slow_path.stat().st_size
    # pieces every 0.5 s (well inside the timeout), the whole C-STORE longer than it
    piece = max(1024, size // 16)
    relay = Relay(dicom.port, piece=piece, delay=0.5)
    slow: dict[str, Any] = {}
    sender = threading.Thread(target=store, args=(relay.port, slow_path, slow))
    began = time.monotonic()
    sender.start()
    time.sleep(1.0)
    fast_path = make_instance(tmp_path, PatientID="FAST")
    fast: dict[str, Any] = {}
    fast_began = time.monotonic()
    store(dicom.port, fast_path, fast)
    fast_took = time.monotonic() - fast_began
    assert fast.get("status") == 0x0000, fast
    assert sender.is_alive(), "the slow sender finished before the check"
    assert fast_took < 3.0, f"another association waited {fast_took:.1f} s"
    sender.join(60)
    took = time.monotonic() - began
    assert slow.get("status") == 0x0000, slow
    assert took > TIMEOUT, f"the trickle took {took:.1f} s, not longer than the timeout"
    uid = str(pydicom.dcmread(slow_path).SOPInstanceUID)
    assert [str(i.SOPInstanceUID) for i in find_images(dicom, SOPInstanceUID=uid)] == [uid]


def test_a_sender_silent_beyond_the_timeout_mid_c_store_is_aborted(
        dicom: DicomServer, tmp_path: Path) -> None:
    path = make_instance(tmp_path, PatientID="SILENT")
    relay = Relay(dicom.port, piece=1024)
    # let the association through, then stop in the middle of the dataset
    relay.stall_after = 2048 + path.stat().st_size // 2
    result: dict[str, Any] = {}
    sender = threading.Thread(target=store, args=(relay.port, path, result), daemon=True)
    began = time.monotonic()
    sender.start()
    wait_for(lambda: relay.server_closed_at is not None, timeout=TIMEOUT * 3)
    closed_after = relay.server_closed_at - began  # type: ignore[operator]
    assert TIMEOUT - 1 <= closed_after <= TIMEOUT * 2.5, closed_after
    uid = str(pydicom.dcmread(path).SOPInstanceUID)
    assert find_images(dicom, SOPInstanceUID=uid) == []
    # and the listener still serves
    again: dict[str, Any] = {}
    store(dicom.port, make_instance(tmp_path, PatientID="AFTER"), again)
    assert again.get("status") == 0x0000


def test_a_connection_that_never_speaks_is_closed(dicom: DicomServer) -> None:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", dicom.port)) as quiet:
        quiet.settimeout(TIMEOUT * 3)
        assert quiet.recv(1024) == b""  # closed by the server (or an A-ABORT first)
        while quiet.recv(1024):
            pass
    assert time.monotonic() - began <= TIMEOUT * 2.5
