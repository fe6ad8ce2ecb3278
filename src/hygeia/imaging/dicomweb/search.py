"""QIDO-RS (PS3.18 10.6): studies, series and instances matching a query, as DICOM JSON.

The index answers from its columns and the attributes it keeps per level
(:mod:`hygeia.imaging.index`), never opening a file, except for an instance-level
``includefield`` the index does not keep (then each instance's header is read).
Every answer carries ``RetrieveURL`` (0008,1190), the WADO-RS URL of the match.
A token restricted to a patient sees only that patient's studies
(:mod:`.access`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from hygeia.imaging.dicomweb.access import Reach
from hygeia.imaging.dicomweb.dicomjson import element, file_metadata
from hygeia.imaging.dicomweb.qido import QidoQuery, parse_qido
from hygeia.imaging.dicomweb.routes import Route
from hygeia.server.extensions import MountRequest, MountResponse

if TYPE_CHECKING:
    from hygeia.imaging.archive import Archive, InstanceRecord, SeriesRecord, StudyRecord

DICOM_JSON = "application/dicom+json"


def search(archive: Archive, request: MountRequest, route: Route, reach: Reach
           ) -> tuple[MountResponse, list[str]]:
    """The QIDO-RS answer, and the study UIDs it names (for the audit trail)."""
    query = parse_qido(request.query)
    filters = _filters(query, route, reach)
    if filters is None:
        return MountResponse(200, b"[]", DICOM_JSON), []
    base = f"{request.root}/dicomweb"
    found: list[dict[str, Any]] = []
    studies: list[str] = []
    if route.level == "study":
        for study in archive.find_studies(filters, fuzzy=query.fuzzy, limit=query.limit,
                                          offset=query.offset):
            found.append(_study_json(study, base))
            studies.append(study.study_uid)
    elif route.level == "series":
        for series in archive.find_series(filters, fuzzy=query.fuzzy, limit=query.limit,
                                          offset=query.offset):
            found.append(_series_json(series, base))
            studies.append(series.study_uid)
    else:
        for instance in archive.find_instances(filters, fuzzy=query.fuzzy, limit=query.limit,
                                               offset=query.offset):
            found.append(_instance_json(archive, instance, base, query))
            studies.append(instance.study_uid)
    return MountResponse(200, orjson.dumps(found), DICOM_JSON), list(dict.fromkeys(studies))


def _filters(query: QidoQuery, route: Route, reach: Reach) -> dict[str, str] | None:
    """The index filters: the query's, the path's UIDs, and the token's reach (None:
    nothing can match)."""
    filters = dict(query.filters)
    for keyword, uid in (("StudyInstanceUID", route.study),
                         ("SeriesInstanceUID", route.series)):
        if uid is None:
            continue
        asked = _uid_list(filters.get(keyword))
        if asked is not None and uid not in asked:
            return None
        filters[keyword] = uid
    if reach.studies is not None:
        asked = _uid_list(filters.get("StudyInstanceUID"))
        allowed = reach.studies if asked is None else reach.studies & asked
        if not allowed:
            return None
        filters["StudyInstanceUID"] = "\\".join(sorted(allowed))
    return filters


def _uid_list(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(uid.strip() for uid in value.replace(",", "\\").split("\\")
                     if uid.strip())


def _study_json(study: StudyRecord, base: str) -> dict[str, Any]:
    found = study.json()
    found["00081190"] = element("00081190", f"{base}/studies/{study.study_uid}")
    return found


def _series_json(series: SeriesRecord, base: str) -> dict[str, Any]:
    found = series.json()
    found["00081190"] = element(
        "00081190", f"{base}/studies/{series.study_uid}/series/{series.series_uid}")
    return found


def _instance_json(archive: Archive, instance: InstanceRecord, base: str, query: QidoQuery
                   ) -> dict[str, Any]:
    found = instance.json()
    url = (f"{base}/studies/{instance.study_uid}/series/{instance.series_uid}"
           f"/instances/{instance.sop_uid}")
    missing = [tag for tag in query.include if tag not in found]
    if query.include_all or missing:
        header = file_metadata(archive.path(instance), url)
        wanted = header if query.include_all else \
            {tag: header[tag] for tag in missing if tag in header}
        found = {**wanted, **found}
    found["00081190"] = element("00081190", url)
    return dict(sorted(found.items()))
