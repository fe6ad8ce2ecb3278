"""The files: a content-addressed store of DICOM Part 10 files (ADR imaging-storage).

Layout under the storage root (``hygeia serve --dicom-storage``)::

    objects/ab/cd/abcd...ef   a file, named by the SHA-256 of its bytes
    incoming/                 files being written (same file system, so a rename
                              moves them into objects/ atomically)

A file is written whole into ``incoming/``, fsynced, renamed to its name in
``objects/`` and the directory fsynced, so a file under ``objects/`` is always
complete and durable, whatever crash comes. Two identical files are one.
Nothing here knows DICOM: the index (:mod:`.index`) says which file is which
instance.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
SYNC_THREADS = 8  # fsyncs in flight at once (fsync_all)


class Blobs:
    """The content-addressed files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.incoming = root / "incoming"

    def prepare(self) -> None:
        """Create the folders (idempotent)."""
        self.objects.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256[2:4] / sha256

    def new_incoming(self) -> Path:
        """A fresh path in ``incoming/`` to write a file to (then :meth:`commit` it)."""
        self.prepare()
        return self.incoming / f"{uuid.uuid4().hex}.part"

    def write_incoming(self, chunks: Iterable[bytes] | BinaryIO) -> tuple[Path, str, int]:
        """Write ``chunks`` (or a binary file's content) to a new incoming file, fsynced;
        its path, SHA-256 and size."""
        path = self.new_incoming()
        digest = hashlib.sha256()
        size = 0
        source: Iterable[bytes] = iter(lambda: chunks.read(CHUNK), b"") \
            if hasattr(chunks, "read") else chunks
        try:
            with open(path, "wb") as out:
                for chunk in source:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            discard(path)
            raise
        return path, digest.hexdigest(), size

    def digest_of(self, path: Path, *, sync: bool = True) -> tuple[str, int]:
        """SHA-256 and size of a file written elsewhere into ``incoming/``, fsyncing it
        (``sync=False``: the caller will, with :meth:`sync_incoming`, before
        :meth:`commit`)."""
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb+") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            if sync:
                os.fsync(handle.fileno())
        return digest.hexdigest(), size

    def sync_incoming(self, paths: Sequence[Path]) -> list[OSError | None]:
        """fsync incoming files, several at once (:func:`fsync_all`); per file, the
        error that kept it from being durable, or None."""
        return fsync_all(paths)

    def commit(self, incoming: Path, sha256: str, *, sync: bool = True) -> Path:
        """Move a complete incoming file to its content address, durably; when that
        file exists already, drop the incoming copy. ``sync=False`` leaves the fsync of
        its directory to a later :meth:`sync` (one for several files)."""
        target = self.path(sha256)
        if target.exists():
            discard(incoming)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming, target)
        if sync:
            _fsync_dir(target.parent)
        return target

    def sync(self, sha256s: Sequence[str]) -> list[OSError | None]:
        """Make the moves of :meth:`commit` ``sync=False`` durable: each directory they
        went to fsynced once, several at once (:func:`fsync_all`). Per file, the error
        that kept its move from being durable, or None."""
        folders = sorted({self.path(sha256).parent for sha256 in sha256s})
        errors = dict(zip(folders, fsync_all(folders), strict=True))
        return [errors[self.path(sha256).parent] for sha256 in sha256s]

    def remove(self, sha256s: Iterable[str]) -> int:
        """Remove the files named; how many were there."""
        removed = 0
        for sha256 in sha256s:
            with contextlib.suppress(FileNotFoundError):
                self.path(sha256).unlink()
                removed += 1
        return removed

    def clear_incoming(self, older_than: float = 24 * 3600.0) -> int:
        """Drop files a crash left half-written in ``incoming/`` (those not touched for
        ``older_than`` seconds: another process may be writing the others); how many."""
        self.prepare()
        limit = time.time() - older_than
        dropped = 0
        for path in self.incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < limit:
                    path.unlink()
                    dropped += 1
        return dropped


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def fsync_all(paths: Sequence[Path]) -> list[OSError | None]:
    """fsync each file or directory, up to :data:`SYNC_THREADS` at once; per path the
    error, or None. Concurrent fsyncs share the file system's journal commits and the
    disk's cache flushes, so n of them cost far less than n one after the other (each
    waits for a flush of its own: about 2 ms on the benchmark's virtual disk)."""
    if len(paths) < 2:
        return [_fsync_path(path) for path in paths]
    with ThreadPoolExecutor(min(SYNC_THREADS, len(paths)),
                            thread_name_prefix="dicom-fsync") as pool:
        return list(pool.map(_fsync_path, paths))


def _fsync_path(path: Path) -> OSError | None:
    try:
        _fsync_dir(path)  # an O_RDONLY descriptor: fsync needs no more, file or folder
    except OSError as error:
        return error
    return None


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
