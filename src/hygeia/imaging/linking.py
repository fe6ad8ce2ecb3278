"""Keeping each study's ImagingStudy in step with the archive, a few seconds behind it.

Storing an instance adds to the study's row of ``imaging_pending``
(:mod:`.tables`); the :class:`Linker` (a :class:`~hygeia.server.extensions.Listener`,
so it runs in one serving process) writes the ImagingStudy of a pending study
when its sender is done (``Archive.sender_done``: an association released, a
STOW-RS request answered), when no instance arrived for ``quiet`` seconds, or
once ``max_wait`` seconds passed since the first unwritten one; and never more
often than once per ``quiet`` seconds per study. A CT of 500 slices over one
association is one ImagingStudy version, not 500.

A study whose pending row changed while its ImagingStudy was written stays
pending (the row is deleted only if its count of changes is the one read), so
nothing is missed whatever the interleaving with the storers.

Deleting: :func:`delete_study` removes the index rows and the ImagingStudy in one
transaction, then the files (``hygeia imaging delete``); :class:`DeletedStudies`
reads the change feed and removes the archive's copy of a study whose
ImagingStudy was deleted over FHIR.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import Any

import orjson

from hygeia.imaging import index, resources
from hygeia.imaging.archive import Archive, Deleted
from hygeia.imaging.settings import LinkSettings
from hygeia.server.extensions import EventContext, Host
from hygeia.server.rest import write
from hygeia.store import ChangeBatch, as_sql

log = logging.getLogger("hygeia.imaging.linking")


class Linker:
    """Writes the ImagingStudy of pending studies, on a thread of its own."""

    name = "imaging-linker"

    def __init__(self, host: Host, archive: Archive, settings: LinkSettings | None = None
                 ) -> None:
        self.host = host
        self.archive = archive
        self.settings = settings or LinkSettings()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, float] = {}  # study UID -> monotonic time of its last write

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="imaging-linker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write every pending ImagingStudy, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.settings.poll)
            self._wake.clear()
            try:
                self.run_once()
            except Exception:  # a bug or the database away: log, go on after a pause
                log.exception("imaging: writing ImagingStudy resources failed")
                self._stopping.wait(5.0)
        try:
            self.run_once(everything=True)
        except Exception:
            log.exception("imaging: writing ImagingStudy resources at stop failed")

    def run_once(self, *, everything: bool = False) -> int:
        """Write the ImagingStudy of each study that is due; how many were written."""
        now_us = time.time_ns() // 1000
        quiet_us = int(self.settings.quiet * 1e6)
        with self.archive.reader() as session:
            rows = session.execute("SELECT study_uid, changes, first_at, changed_at, flush "
                                   "FROM imaging_pending").fetchall()
        written = 0
        for study_uid, changes, first_at, changed_at, flush in rows:
            due = everything or int(flush) or int(changed_at) <= now_us - quiet_us or \
                int(first_at) <= now_us - int(self.settings.max_wait * 1e6)
            recent = time.monotonic() - self._last.get(str(study_uid), -1e9) < \
                self.settings.quiet
            if due and (everything or not recent):
                self.link(str(study_uid), int(changes))
                written += 1
        return written

    def link(self, study_uid: str, changes: int | None = None) -> str | None:
        """Write the ImagingStudy of one study now; its id (None: not in the archive)."""
        self._last[study_uid] = time.monotonic()
        with self.host.transaction() as session:
            sql = as_sql(session)
            session.lock(f"imaging-study:{study_uid}")
            study = index.study(sql, study_uid)
            if study is None:
                sql.execute("DELETE FROM imaging_pending WHERE study_uid = ?", (study_uid,))
                return None
            series = index.find_series(sql, {"StudyInstanceUID": study_uid},
                                       limit=index.MAX_LIMIT)
            instances = index.study_instances(sql, study_uid)
            id = resources.existing_id(session, study_uid) or study_uid
            subject = resources.patient_for(self.host, session, study,
                                            self.settings.default_system)
            endpoint = resources.ensure_endpoint(session, self.host.settings.base_url)
            orders = resources.orders_for(session, study.accession)
            resource = resources.build_study(id, study, series, instances, subject, endpoint,
                                             orders)
            if _changed(session, id, resource):
                write.update(session, "ImagingStudy", id, resource)
            resources.link_reports(session, f"ImagingStudy/{id}", study.accession, orders)
            if changes is None:
                sql.execute("DELETE FROM imaging_pending WHERE study_uid = ?", (study_uid,))
            else:
                sql.execute("DELETE FROM imaging_pending WHERE study_uid = ? AND changes = ?",
                            (study_uid, changes))
        return id


def _changed(session: Any, id: str, resource: dict[str, Any]) -> bool:
    current = session.current("ImagingStudy", id)
    if current is None or current.deleted or current.content is None:
        return True
    stored = orjson.loads(current.content)
    stored.pop("meta", None)
    return bool(stored != resource)


def delete_study(host: Host, archive: Archive, study_uid: str) -> tuple[Deleted, str | None]:
    """Remove a study from the archive and delete its ImagingStudy, in one transaction
    (the files go once it committed); the ImagingStudy's id, if there was one."""
    deleted_id: list[str] = []

    def also(session: Any) -> None:
        id = resources.existing_id(session, study_uid)
        if id is not None:
            write.delete(session, "ImagingStudy", id)
            deleted_id.append(id)

    result = archive.delete_study(study_uid, also=also, transaction=host.transaction)
    return result, (deleted_id[0] if deleted_id else None)


class DeletedStudies:
    """Removes the archive's copy of a study whose ImagingStudy was deleted (after commit:
    at least once, and deleting twice removes nothing the second time)."""

    name = "imaging-deleted-studies"
    types: Collection[str] | None = ("ImagingStudy",)
    from_start = False

    def __init__(self, host: Host, archive: Archive) -> None:
        self.host = host
        self.archive = archive

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        uids: list[str] = []
        with context.reader() as session:
            for event in batch.events:
                if event.interaction != "delete" or event.version < 2:
                    continue
                before = session.version(event.resource_type, event.id, event.version - 1)
                if before is None or before.content is None:
                    continue
                uids.extend(_study_uids(orjson.loads(before.content)))
        for uid in uids:
            result = self.archive.delete_study(uid)
            if result.instances:
                log.info("imaging: ImagingStudy of %s deleted: %d instances and %d files "
                         "removed", uid, result.instances, result.files)


def _study_uids(resource: dict[str, Any]) -> list[str]:
    return [str(identifier["value"])[len("urn:oid:"):]
            for identifier in resource.get("identifier") or []
            if identifier.get("system") == resources.DICOM_UID and
            str(identifier.get("value", "")).startswith("urn:oid:")]
