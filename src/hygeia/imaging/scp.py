"""The DIMSE listener (``hygeia serve --dicom-port N``): pynetdicom serving the archive.

Services, as SCP, under the server's AE title (associations calling another are
rejected):

- C-ECHO (Verification);
- C-STORE for every storage SOP class pynetdicom knows (CT, MR, CR/DX, US, SC,
  SR, SEG, encapsulated PDF ...) in every transfer syntax pydicom knows: each
  instance is stored as the Part 10 file the peer's bytes make (the dataset
  exactly as sent, never re-encoded), fsynced and indexed before the success
  status goes back (:class:`~hygeia.imaging.archive.Archive`; the index rows of
  instances arriving at once on several associations share one commit,
  :class:`~hygeia.server.group_commit.GroupCommit`). A malformed
  dataset, or one whose SOP Instance UID differs from the request's, is answered
  0xC000 with the reason in ErrorComment and nothing is stored;
- C-FIND at PATIENT, STUDY, SERIES and IMAGE level, Patient Root and Study Root,
  from the index (:mod:`.index` for the matching rules; at most
  :data:`MAX_MATCHES` answers per request);
- C-GET (over the same association) and C-MOVE (to an AE title registered with
  ``hygeia imaging ae add``; others are answered 0xA801), sending each stored
  file's dataset bytes unchanged where the peer accepts its stored transfer
  syntax, converted by pydicom where it can be, else a failed sub-operation
  (:mod:`.sending`).

When an association ends (released, or aborted: a peer that drops mid-transfer
loses only the instance in flight) the studies it stored are handed to the
ImagingStudy linker at once. Limits: ``max_associations`` at once (more are
rejected), ``timeout`` seconds without a byte from the peer aborts an
association (:mod:`.silence`; a slow but steady sender is not cut off).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

from hygeia.imaging import index
from hygeia.imaging.archive import Archive
from hygeia.imaging.linking import Linker
from hygeia.imaging.parsing import PATIENT_KEYWORDS, Malformed
from hygeia.imaging.sending import (
    EXPLICIT_LITTLE,
    VERIFICATION,
    ArchiveAE,
    StoredInstance,
    allow_sending_files,
    move_contexts,
    send_stored_bytes,
)
from hygeia.imaging.settings import ScpSettings
from hygeia.imaging.silence import watch_silence
from hygeia.server.extensions import Host
from hygeia.server.group_commit import GroupCommit

log = logging.getLogger("hygeia.imaging.scp")
MAX_MATCHES = 10_000  # C-FIND answers per request
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700
FIND_FAILED = 0xC001
MOVE_DESTINATION_UNKNOWN = 0xA801
PENDING = 0xFF00
CANCELLED = 0xFE00
# Query/Retrieve information models: Patient Root and Study Root, FIND, MOVE and GET
QUERY_RETRIEVE = {"patient-find": "1.2.840.10008.5.1.4.1.2.1.1",
                  "patient-move": "1.2.840.10008.5.1.4.1.2.1.2",
                  "patient-get": "1.2.840.10008.5.1.4.1.2.1.3",
                  "study-find": "1.2.840.10008.5.1.4.1.2.2.1",
                  "study-move": "1.2.840.10008.5.1.4.1.2.2.2",
                  "study-get": "1.2.840.10008.5.1.4.1.2.2.3"}
# pynetdicom accepts the first of its own list the peer proposes: explicit VR first, so a
# C-GET receiver that offers it gets an explicit VR file as stored, unchanged
SYNTAXES = [EXPLICIT_LITTLE, *(uid for uid in ALL_TRANSFER_SYNTAXES if uid != EXPLICIT_LITTLE)]
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
RETRIEVE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


class DicomListener:
    """Serves DIMSE on ``host:port`` (``port`` 0: any free port, see :attr:`port`)."""

    name = "dicom"

    def __init__(self, host: Host, archive: Archive, linker: Linker | None, address: str,
                 port: int, settings: ScpSettings | None = None) -> None:
        self.host = host
        self.archive = archive
        self.linker = linker
        self.address = address
        self.port = port
        self.settings = settings or ScpSettings()
        self._server: Any = None
        self.commits = GroupCommit(host, name="dicom-commit")
        self._studies: dict[int, set[str]] = {}  # association id -> study UIDs stored
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Bind (raising OSError when the port is taken) and serve on pynetdicom's threads."""
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        allow_sending_files()
        ae = ArchiveAE(ae_title=self.settings.ae_title)
        ae.maximum_associations = self.settings.max_associations
        ae.network_timeout = self.settings.timeout
        ae.acse_timeout = self.settings.timeout
        ae.dimse_timeout = self.settings.timeout
        ae.maximum_pdu_size = self.settings.max_pdu
        ae.require_called_aet = True
        ae.add_supported_context(VERIFICATION)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), SYNTAXES,
                                     scu_role=True, scp_role=True)
        for model in QUERY_RETRIEVE.values():
            ae.add_supported_context(model)
        handlers: list[Any] = [(evt.EVT_C_STORE, self._store), (evt.EVT_C_FIND, self._find),
                    (evt.EVT_C_GET, self._get), (evt.EVT_C_MOVE, self._move),
                    (evt.EVT_RELEASED, self._ended), (evt.EVT_ABORTED, self._ended),
                    (evt.EVT_CONN_CLOSE, self._ended), (evt.EVT_CONN_OPEN, self._opened)]
        self.commits.start()
        self.archive.committer = self.commits  # associations at once share commits
        try:
            self._server = ae.start_server((self.address, self.port), block=False,
                                           evt_handlers=handlers)
        except BaseException:
            self.archive.committer = None
            self.commits.stop()
            raise
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        """Stop accepting and end open associations (an instance being stored finishes
        or is lost whole: the sender did not get its success status)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.archive.committer = None
        self.commits.stop()

    def _opened(self, event: Any) -> None:
        watch_silence(event.assoc, self.settings.timeout)

    # ---------------------------------------------------------------- C-STORE

    def _store(self, event: Any) -> Any:
        request = event.request
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as error:  # the peer's dataset cannot even be framed
            return _status(CANNOT_UNDERSTAND, f"The dataset cannot be read: {error}")
        source = _calling(event)
        try:
            stored = self.archive.store_bytes(
                data, source_ae=source,
                expected=(str(request.AffectedSOPClassUID),
                          str(request.AffectedSOPInstanceUID)))
        except Malformed as error:
            log.warning("DICOM: refused an instance from %s: %s", source, error)
            return _status(CANNOT_UNDERSTAND, str(error))
        except OSError as error:
            log.error("DICOM: storing an instance from %s failed: %s", source, error)
            return _status(OUT_OF_RESOURCES, "The instance could not be written to disk.")
        with self._lock:
            self._studies.setdefault(id(event.assoc), set()).add(stored.study_uid)
        return 0x0000

    def _ended(self, event: Any) -> None:
        with self._lock:
            studies = self._studies.pop(id(event.assoc), set())
        if studies:
            try:
                self.archive.sender_done(studies)
            except Exception:
                log.exception("DICOM: marking studies done failed (the linker will write "
                              "them after its quiet period)")
            if self.linker is not None:
                self.linker.wake()

    # ---------------------------------------------------------------- C-FIND

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "") or "").upper()
        if level not in LEVELS:
            yield _status(FIND_FAILED, f"QueryRetrieveLevel {level!r} is not one of "
                                       f"{', '.join(LEVELS)}."), None
            return
        try:
            filters = query_filters(identifier)
            records = self._matches(level, filters)
        except Exception:
            log.exception("DICOM: a C-FIND failed")
            yield _status(FIND_FAILED, "The query failed on the server."), None
            return
        for attrs in records:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield PENDING, answer(identifier, attrs, self.settings.ae_title)

    def _matches(self, level: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        if level == "PATIENT":
            return patients(self.archive.find_studies(filters, limit=MAX_MATCHES))
        if level == "STUDY":
            return [r.json() for r in self.archive.find_studies(filters, limit=MAX_MATCHES)]
        if level == "SERIES":
            return [r.json() for r in self.archive.find_series(filters, limit=MAX_MATCHES)]
        return [r.json() for r in self.archive.find_instances(filters, limit=MAX_MATCHES)]

    # ---------------------------------------------------------------- C-GET, C-MOVE

    def _retrieve(self, identifier: Dataset) -> list[index.InstanceRecord]:
        filters = {key: str(identifier.get(key, "") or "") for key in RETRIEVE_KEYS
                   if str(identifier.get(key, "") or "").strip()}
        if not filters:
            return []
        return self.archive.find_instances(filters, limit=None)

    def _get(self, event: Any) -> Iterator[Any]:
        send_stored_bytes(event.assoc)
        records = self._retrieve(event.identifier)
        yield len(records)
        for record in records:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield PENDING, StoredInstance(record, self.archive.path(record))

    def _move(self, event: Any) -> Iterator[Any]:
        destination = str(event.move_destination or "").strip()
        with self.archive.reader() as session:
            row = session.execute("SELECT host, port FROM imaging_ae WHERE title = ?",
                                  (destination,)).fetchone()
        if row is None:
            log.warning("DICOM: C-MOVE to unregistered AE title %r refused", destination)
            yield None, None
            return
        records = self._retrieve(event.identifier)
        yield str(row[0]), int(row[1]), {"ae_title": destination,
                                         "contexts": move_contexts(records)}
        yield len(records)
        for record in records:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield PENDING, StoredInstance(record, self.archive.path(record))


def _calling(event: Any) -> str:
    title = event.assoc.requestor.ae_title
    return (title.decode("ascii", "replace") if isinstance(title, bytes) else str(title)).strip()


def _status(code: int, comment: str) -> Any:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]  # LO: 64 characters at most
    return status


def query_filters(identifier: Dataset) -> dict[str, str]:
    """A C-FIND identifier's non-empty keys as index filters (DICOM match values)."""
    filters: dict[str, str] = {}
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or \
                element.VR == "SQ" or element.is_empty:
            continue
        value = element.value
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(item) for item in value)
        else:
            text = str(value)
        filters[keyword] = text
    return filters


def patients(studies: list[index.StudyRecord]) -> list[dict[str, Any]]:
    """PATIENT level answers: one per PatientID, with its related counts."""
    from pydicom.datadict import tag_for_keyword

    found: dict[str, dict[str, Any]] = {}
    counts: dict[str, list[int]] = {}
    keep = {f"{tag_for_keyword(k):08X}" for k in PATIENT_KEYWORDS}
    for study in studies:
        if study.patient_id not in found:
            found[study.patient_id] = {k: v for k, v in study.attrs.items() if k in keep}
            counts[study.patient_id] = [0, 0, 0]
        counts[study.patient_id][0] += 1
        counts[study.patient_id][1] += study.series_count
        counts[study.patient_id][2] += study.instance_count
    for patient_id, attrs in found.items():
        studies_n, series_n, instances_n = counts[patient_id]
        attrs["00201200"] = {"vr": "IS", "Value": [studies_n]}
        attrs["00201202"] = {"vr": "IS", "Value": [series_n]}
        attrs["00201204"] = {"vr": "IS", "Value": [instances_n]}
    return list(found.values())


def answer(identifier: Dataset, attrs: dict[str, Any], ae_title: str) -> Dataset:
    """The C-FIND response: each key the identifier asked for, with the match's value
    (empty when it has none), in UTF-8."""
    have = Dataset.from_json(attrs)
    response = Dataset()
    response.SpecificCharacterSet = "ISO_IR 192"
    for element in identifier:
        if element.keyword == "SpecificCharacterSet":
            continue
        if element.keyword == "QueryRetrieveLevel":
            response.QueryRetrieveLevel = element.value
        elif element.tag in have:
            response.add(have[element.tag])
        else:
            response.add_new(element.tag, element.VR, None)
    response.RetrieveAETitle = ae_title
    return response
