"""The DICOM archive: the public API every way in (DIMSE, DICOMweb, the CLI) stores and reads by.

One :class:`Archive` per process, over the server's repository and a storage
folder (``hygeia serve --dicom-storage``, default ``FILES/dicom``)::

    archive = Archive(host.repository, Path("/var/lib/hygeia-files/dicom"))

Storing (each returns a :class:`Stored`, or raises :class:`Malformed` with the
reason, having stored nothing):

- ``archive.store_bytes(data, source_ae="CT1")``: a Part 10 file in memory;
- ``archive.store_stream(chunks_or_binary_file, source_ae="")``: streamed to disk
  while hashed, never held whole in memory (STOW-RS parts);
- ``path = archive.incoming_path()`` then write the file there yourself, then
  ``archive.store_incoming(path)``: the archive takes the file over (moved, not
  copied) and removes it on refusal.

Each stores the file content-addressed (named by its SHA-256, written
atomically, fsynced, its directory fsynced) before the index row commits, so a
returned :class:`Stored` means durable. Storing a SOP Instance UID that is
already indexed is idempotent: nothing changes and ``Stored.created`` is False
(the first copy stays). ``after_store`` callbacks (``archive.after_store.append(f)``)
get each new :class:`Stored` (the ImagingStudy linker listens there).
Call ``archive.sender_done(study_uids)`` when a sender has finished (an
association released, a STOW-RS request answered): their ImagingStudy is then
written at the next chance, not after the quiet period.

Reading (records of :mod:`hygeia.imaging.index`; ``json()`` is the DICOM JSON of
a QIDO-RS answer with counts and the upper levels' attributes):

- ``archive.find_studies(filters, fuzzy=False, limit=100, offset=0)``,
  ``archive.find_series(...)``, ``archive.find_instances(...)``: ``filters`` map
  DICOM keywords to DICOM match values: ``{"PatientID": "P1", "StudyDate":
  "20240101-20240131", "ModalitiesInStudy": "CT\\\\MR", "PatientName": "Doe*",
  "AccessionNumber": "A1", "StudyInstanceUID": "1.2\\\\1.3"}``; the keys matched
  are ``index.STUDY_KEYS``, ``index.SERIES_KEYS``, ``index.INSTANCE_KEYS``
  (others are ignored); ``fuzzy=True`` matches PatientName words by prefix;
- ``archive.study(uid)``, ``archive.instance(sop_uid)``: one record or None;
- ``archive.open(record)``: the instance's Part 10 file, opened for binary reading,
  exactly the bytes received; ``archive.path(record)``: its path;

Deleting: ``archive.delete_study(uid)`` removes the index rows and then, once
that committed, the files (:class:`Deleted`). The pillar's
``linking.delete_study(host, archive, uid)`` deletes the ImagingStudy in the same
transaction (``hygeia imaging delete``); DELETE ImagingStudy/[uid] over FHIR
removes the study from the archive after commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from hygeia.imaging import index, tables  # noqa: F401  (tables: the "imaging" migration stream)
from hygeia.imaging.index import InstanceRecord, SeriesRecord, StudyRecord
from hygeia.imaging.parsing import Malformed, Parsed, parse
from hygeia.imaging.storage import Blobs, discard
from hygeia.store import Repository, as_sql, reading, writing

__all__ = ["Archive", "Deleted", "InstanceRecord", "Malformed", "SeriesRecord", "Stored",
           "StudyRecord"]

T = TypeVar("T")


class Committer(Protocol):
    """Runs a unit of index work in a write transaction (a group commit may share one)."""

    def run(self, work: Callable[[Any], T], key: Hashable | None = None) -> T: ...


@dataclass(frozen=True, slots=True)
class Stored:
    """An instance the archive holds (``created``: False when it held it already)."""

    sop_instance: str
    sop_class: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    sha256: str
    size: int
    created: bool


@dataclass(frozen=True, slots=True)
class Deleted:
    """What :meth:`Archive.delete_study` removed."""

    study_uid: str
    instances: int
    files: int


class Archive:
    """Files under ``root`` and their index in ``repository`` (module docstring)."""

    def __init__(self, repository: Repository, root: Path) -> None:
        self.repository = repository
        self.root = root
        self.blobs = Blobs(root)
        self.blobs.prepare()
        self.after_store: list[Callable[[Stored], None]] = []
        self.committer: Committer | None = None  # a GroupCommit while a listener runs

    # ---------------------------------------------------------------- storing

    def store_bytes(self, data: bytes, *, source_ae: str = "",
                    expected: tuple[str, str] | None = None) -> Stored:
        """Store one Part 10 file given whole. ``expected``: the (SOP Class UID, SOP
        Instance UID) the sender announced (C-STORE): a dataset with others is refused."""
        return self.store_stream([data], source_ae=source_ae, expected=expected)

    def store_stream(self, chunks: Iterable[bytes] | BinaryIO, *, source_ae: str = "",
                     expected: tuple[str, str] | None = None) -> Stored:
        """Store one Part 10 file read from ``chunks`` (or a binary file object)."""
        path, sha256, size = self.blobs.write_incoming(chunks)
        return self._store(path, sha256, size, source_ae, expected)

    def incoming_path(self) -> Path:
        """Where to write a file yourself before :meth:`store_incoming`."""
        return self.blobs.new_incoming()

    def store_incoming(self, path: Path, *, source_ae: str = "") -> Stored:
        """Store the file written at ``path`` (from :meth:`incoming_path`); it is moved
        into the store, or removed when refused."""
        try:
            sha256, size = self.blobs.digest_of(path)
        except BaseException:
            discard(path)
            raise
        return self._store(path, sha256, size, source_ae)

    def store_incoming_many(self, paths: Sequence[Path], *, source_ae: str = ""
                            ) -> list[Stored | Malformed | OSError]:
        """Store several files written at paths from :meth:`incoming_path` (the parts of
        one STOW-RS request) as :meth:`store_incoming` does each, with fewer waits for
        the disk: all are checked, then fsynced together, moved to their addresses,
        their directories fsynced together, and their rows indexed in one transaction
        (one commit instead of one each). Every file is durable before this returns.
        Per file, in order: its :class:`Stored`, or the error that refused it (that
        file removed, the others unaffected)."""
        outcomes: list[Stored | Malformed | OSError | None] = []
        checked: list[tuple[int, Path, Parsed, str, int]] = []
        for path in paths:
            try:
                sha256, size = self.blobs.digest_of(path, sync=False)
                parsed, held = self._check(path)
            except (Malformed, OSError) as error:
                discard(path)
                outcomes.append(error)
                continue
            outcomes.append(held)
            if held is None:
                checked.append((len(outcomes) - 1, path, parsed, sha256, size))
            else:
                discard(path)
        synced = self.blobs.sync_incoming([path for _, path, _, _, _ in checked])
        moved = [item for item, error in zip(checked, synced, strict=True)
                 if self._move(item, error, outcomes)]
        placed = [item for item, error in zip(
            moved, self.blobs.sync([sha for _, _, _, sha, _ in moved]), strict=True)
            if _kept(item[0], error, outcomes)]
        created = self._index_many([(parsed, sha, size) for _, _, parsed, sha, size in placed],
                                   source_ae)
        for (number, _, parsed, sha256, size), made in zip(placed, created, strict=True):
            outcomes[number] = self._indexed(parsed, sha256, size, made)
        return [outcome for outcome in outcomes if outcome is not None]

    def _move(self, item: tuple[int, Path, Parsed, str, int], error: OSError | None,
              outcomes: list[Any]) -> bool:
        """Move a checked, fsynced incoming file to its address (directory not yet
        fsynced); False, with the error in ``outcomes``, when it cannot be."""
        number, path, _, sha256, _ = item
        if error is None:
            try:
                self.blobs.commit(path, sha256, sync=False)
                return True
            except OSError as failed:
                error = failed
        discard(path)
        outcomes[number] = error
        return False

    def _store(self, path: Path, sha256: str, size: int, source_ae: str,
               expected: tuple[str, str] | None = None) -> Stored:
        try:
            parsed, held = self._check(path, expected)
            if held is not None:
                discard(path)
                return held
            self.blobs.commit(path, sha256)
        except BaseException:
            discard(path)
            raise
        return self._indexed(parsed, sha256, size,
                             self._index(parsed, sha256, size, source_ae))

    def _check(self, path: Path, expected: tuple[str, str] | None = None
               ) -> tuple[Parsed, Stored | None]:
        """Parse the incoming file at ``path``; with the record of the copy already held
        when its SOP Instance UID is indexed (the caller then drops ``path``)."""
        parsed = parse(path)
        if expected is not None:
            _check_expected(parsed, expected)
        existing = self.instance(parsed.sop_instance)
        if existing is not None:
            return parsed, _stored(parsed, existing.sha256, existing.size, created=False)
        return parsed, None

    def _indexed(self, parsed: Parsed, sha256: str, size: int, created: bool) -> Stored:
        """The record of a file just indexed (``created``) or found indexed meanwhile."""
        stored = _stored(parsed, sha256, size, created=created)
        if not created:  # stored meanwhile by another sender: keep the first copy's record
            existing = self.instance(parsed.sop_instance)
            if existing is not None and existing.sha256 != sha256:
                self._drop_unused([sha256])
                stored = _stored(parsed, existing.sha256, existing.size, created=False)
        else:
            for callback in self.after_store:
                callback(stored)
        return stored

    def _index(self, parsed: Parsed, sha256: str, size: int, source_ae: str) -> bool:
        def work(session: Any) -> bool:
            return index.add_instance(as_sql(session), parsed, sha256, size, source_ae,
                                      time.time_ns() // 1000)
        if self.committer is not None:
            return self.committer.run(work, key=parsed.sop_instance)
        with writing(self.repository) as session:
            return work(session)

    def _index_many(self, files: list[tuple[Parsed, str, int]], source_ae: str
                    ) -> list[bool]:
        """:meth:`_index` for several files in one transaction; when that fails, each in
        its own (so one file's error is its own, as when stored alone)."""
        if len(files) < 2:
            return [self._index(parsed, sha, size, source_ae) for parsed, sha, size in files]

        def work(session: Any) -> list[bool]:
            now = time.time_ns() // 1000
            return [index.add_instance(as_sql(session), parsed, sha, size, source_ae, now)
                    for parsed, sha, size in files]
        try:
            if self.committer is not None:
                return self.committer.run(work)
            with writing(self.repository) as session:
                return work(session)
        except Exception:  # retried one by one: each raises its own error, if any
            return [self._index(parsed, sha, size, source_ae) for parsed, sha, size in files]

    def sender_done(self, study_uids: Iterable[str]) -> None:
        """The sender of these studies has finished: write their ImagingStudy soon."""
        uids = sorted(set(study_uids))
        if not uids:
            return
        with writing(self.repository) as session:
            session.execute(f"UPDATE imaging_pending SET flush = 1 WHERE study_uid IN "
                            f"({', '.join('?' * len(uids))})", uids)

    # ---------------------------------------------------------------- reading

    def reader(self) -> AbstractContextManager[Any]:
        """A read snapshot of the index (for several look-ups in one)."""
        return reading(self.repository)

    def find_studies(self, filters: Mapping[str, str], *, fuzzy: bool = False,
                     limit: int = 100, offset: int = 0) -> list[StudyRecord]:
        with reading(self.repository) as session:
            return index.find_studies(session, filters, fuzzy=fuzzy, limit=limit,
                                      offset=offset)

    def find_series(self, filters: Mapping[str, str], *, fuzzy: bool = False,
                    limit: int = 100, offset: int = 0) -> list[SeriesRecord]:
        with reading(self.repository) as session:
            return index.find_series(session, filters, fuzzy=fuzzy, limit=limit,
                                     offset=offset)

    def find_instances(self, filters: Mapping[str, str], *, fuzzy: bool = False,
                       limit: int | None = 100, offset: int = 0) -> list[InstanceRecord]:
        with reading(self.repository) as session:
            return index.find_instances(session, filters, fuzzy=fuzzy, limit=limit,
                                        offset=offset)

    def study(self, study_uid: str) -> StudyRecord | None:
        with reading(self.repository) as session:
            return index.study(session, study_uid)

    def instance(self, sop_uid: str) -> InstanceRecord | None:
        with reading(self.repository) as session:
            return index.instance(session, sop_uid)

    def path(self, record: InstanceRecord) -> Path:
        return self.blobs.path(record.sha256)

    def open(self, record: InstanceRecord) -> BinaryIO:
        """The instance's file as received (Part 10), open for reading."""
        return open(self.path(record), "rb")

    # ---------------------------------------------------------------- deleting

    def delete_study(self, study_uid: str, *, also: Callable[[Any], None] | None = None,
                     transaction: Callable[[], AbstractContextManager[Any]] | None = None
                     ) -> Deleted:
        """Remove a study's index rows and then, once that committed, its files.
        ``also(session)`` runs in the same transaction (the linker deletes the
        ImagingStudy there); ``transaction`` opens it (default: the repository's)."""
        opened = transaction() if transaction is not None else writing(self.repository)
        with opened as session:
            sql = as_sql(session)
            count = int(sql.execute("SELECT COUNT(*) FROM imaging_instance WHERE study_uid = ?",
                                    (study_uid,)).fetchone()[0])
            unused = index.remove_study(sql, study_uid)
            if also is not None:
                also(session)
        return Deleted(study_uid, count, self.blobs.remove(unused))

    def _drop_unused(self, hashes: list[str]) -> None:
        with reading(self.repository) as session:
            unused = [sha for sha in hashes if session.execute(
                "SELECT 1 FROM imaging_instance WHERE sha256 = ? LIMIT 1",
                (sha,)).fetchone() is None]
        self.blobs.remove(unused)


def _kept(number: int, error: OSError | None, outcomes: list[Any]) -> bool:
    """Whether the file numbered ``number`` is still on its way (no ``error``); else the
    error is its outcome."""
    if error is not None:
        outcomes[number] = error
    return error is None


def _check_expected(parsed: Parsed, expected: tuple[str, str]) -> None:
    sop_class, sop_instance = expected
    if parsed.sop_instance != sop_instance:
        raise Malformed(f"The dataset's SOP Instance UID {parsed.sop_instance} differs from "
                        f"the request's {sop_instance}.")
    if parsed.sop_class != sop_class:
        raise Malformed(f"The dataset's SOP Class UID {parsed.sop_class} differs from the "
                        f"request's {sop_class}.")


def _stored(parsed: Parsed, sha256: str, size: int, *, created: bool) -> Stored:
    return Stored(parsed.sop_instance, parsed.sop_class, parsed.study_uid, parsed.series_uid,
                  parsed.transfer_syntax, sha256, size, created)
