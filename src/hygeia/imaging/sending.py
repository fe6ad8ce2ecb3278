"""The C-STORE sub-operations of C-GET and C-MOVE: the stored file's bytes, unchanged.

pynetdicom's Query/Retrieve service sends what a C-GET or C-MOVE handler yields
through ``Association.send_c_store``, and a yielded pydicom ``Dataset`` is encoded
again on the way out: pydicom drops group length elements, rewrites values it
decoded (UIDs, the character set) and may change a sequence's length, so the peer
would get the same values but not the same bytes. ``send_c_store`` sends a
file's dataset bytes as they are only when it is given the file's path (with
pynetdicom's ``STORE_SEND_CHUNKED_DATASET``, which also keeps a large file out of
memory), and the service class accepts only ``Dataset`` objects from handlers.

So the handlers yield a :class:`StoredInstance` (a ``Dataset`` with just the SOP
UIDs pynetdicom's bookkeeping reads, and the file's path), and
:func:`send_stored_bytes` makes the association's ``send_c_store`` send that
path. When the peer accepted the instance's SOP class in its stored transfer
syntax the dataset arrives byte-identical to the stored file (as through WADO-RS
with ``transfer-syntax=*``); otherwise pydicom converts it where it can (between
the uncompressed syntaxes) and the sub-operation fails where it cannot (a
compressed file to a peer that takes only uncompressed ones).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, build_context

from hygeia.imaging import index

log = logging.getLogger("hygeia.imaging.scp")
VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
MAX_CONTEXTS = 128  # the most presentation contexts one association can propose


def allow_sending_files() -> None:
    """Let ``send_c_store(path)`` send the file's dataset bytes undecoded, in chunks.

    Process-wide in pynetdicom; it changes only sends given a path, which in the
    server are this module's."""
    _config.STORE_SEND_CHUNKED_DATASET = True


class StoredInstance(Dataset):
    """An archived instance as a C-GET or C-MOVE handler yields it (module docstring)."""

    def __init__(self, record: index.InstanceRecord, path: Path) -> None:
        super().__init__()
        self.SOPClassUID = record.sop_class
        self.SOPInstanceUID = record.sop_uid
        self.stored_path = path


def send_stored_bytes(assoc: Any) -> None:
    """Make ``assoc.send_c_store`` send a :class:`StoredInstance` from its file.

    Other datasets pass through unchanged; calling it twice on one association
    is harmless."""
    original = assoc.send_c_store
    if getattr(original, "sends_stored_bytes", False):
        return

    def send_c_store(dataset: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(dataset, StoredInstance):
            return original(dataset, *args, **kwargs)
        try:
            return original(dataset.stored_path, *args, **kwargs)
        except (AttributeError, ValueError) as refused:
            # no context in the stored syntax (or a file meta without its UIDs):
            # pydicom converts the decoded dataset to an accepted syntax, or raises
            log.info("DICOM: %s goes re-encoded: %s", dataset.SOPInstanceUID, refused)
            return original(dcmread(dataset.stored_path), *args, **kwargs)

    send_c_store.sends_stored_bytes = True  # type: ignore[attr-defined]
    assoc.send_c_store = send_c_store


class ArchiveAE(AE):
    """pynetdicom's AE whose outgoing associations (C-MOVE's, to the destination) send
    :class:`StoredInstance` datasets as their stored bytes."""

    def associate(self, *args: Any, **kwargs: Any) -> Any:
        assoc = super().associate(*args, **kwargs)
        send_stored_bytes(assoc)
        return assoc


def move_contexts(records: list[index.InstanceRecord]) -> list[Any]:
    """The presentation contexts to propose to a C-MOVE destination: each SOP class
    moved, in its stored transfer syntaxes first, then the uncompressed ones (at most
    :data:`MAX_CONTEXTS`)."""
    syntaxes: dict[str, list[str]] = {}
    for record in records:
        wanted = syntaxes.setdefault(record.sop_class, [EXPLICIT_LITTLE, IMPLICIT_LITTLE])
        if record.transfer_syntax not in wanted:
            wanted.insert(0, record.transfer_syntax)
    if not syntaxes:
        syntaxes[VERIFICATION] = [IMPLICIT_LITTLE]
    return [build_context(sop_class, wanted)
            for sop_class, wanted in list(syntaxes.items())[:MAX_CONTEXTS]]
