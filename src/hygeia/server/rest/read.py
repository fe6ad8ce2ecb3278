"""Read interactions: read, vread and history (instance, type, system)."""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from hygeia.fhir.datetime import fhir_datetime_range, format_instant
from hygeia.fhir.outcome import BadRequest, Gone, NotFound
from hygeia.fhir.search.results import non_negative
from hygeia.fhir.shaping import read_subset, shape_stored
from hygeia.fhir.validation.primitives import shown
from hygeia.server.context import (
    MAX_VERSION_DIGITS,
    FhirRequest,
    FhirResponse,
    Settings,
    bundle,
    parse_etag,
    version_number,
)
from hygeia.store import HistoryQuery, Session, StoredVersion

_STATUS_BY_METHOD = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK",
                     "DELETE": "204 No Content"}


def read(session: Session, resource_type: str, id: str, *,
         if_none_match: str | None = None, if_modified_since: str | None = None,
         params: Sequence[tuple[str, str]] = ()) -> FhirResponse:
    """``GET [type]/[id]``: the current version, shaped by ``_summary`` / ``_elements``;
    304 when ``If-None-Match`` names it or, without that header, when it has not
    changed since ``If-Modified-Since`` (RFC 9110 13.1.3: If-None-Match wins)."""
    subset = read_subset(params)
    current = session.current(resource_type, id)
    if current is None:
        raise NotFound(f"{resource_type}/{id} does not exist.", expression=resource_type)
    if current.deleted:
        raise Gone(f"{resource_type}/{id} was deleted (version {current.version}).",
                   expression=resource_type,
                   headers={"ETag": f'W/"{current.version}"'})
    if _not_modified(current, if_none_match, if_modified_since):
        return FhirResponse(304, version=current.version, last_updated=current.last_updated)
    return _found(current, *subset)


def _not_modified(current: StoredVersion, if_none_match: str | None,
                  if_modified_since: str | None) -> bool:
    if if_none_match is not None:
        return parse_etag(if_none_match) == current.version
    since = _http_date_seconds(if_modified_since)
    # an HTTP date has whole seconds: a change within the named second is not "since"
    return since is not None and current.last_updated // 1_000_000 <= since


def _http_date_seconds(text: str | None) -> int | None:
    """Seconds since the epoch of an HTTP date, or None: an invalid date is ignored
    (RFC 9110 13.1.3), so the read answers 200 as if the header were absent."""
    if not text or len(text) > 64:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None  # not an HTTP date (those are always GMT)
    try:
        return int(moment.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


def vread(session: Session, resource_type: str, id: str, version_id: str,
          params: Sequence[tuple[str, str]] = ()) -> FhirResponse:
    """``GET [type]/[id]/_history/[vid]``, shaped by ``_summary`` / ``_elements`` as a read."""
    subset = read_subset(params)
    version = version_number(version_id)
    if version is None:
        raise BadRequest(f"{shown(version_id)} is not a version id of this server (1 to "
                         f"{MAX_VERSION_DIGITS} digits).", expression=resource_type)
    found = session.version(resource_type, id, version)
    if found is None:
        raise NotFound(f"Version {version_id} of {resource_type}/{id} does not exist.",
                       expression=resource_type)
    if found.deleted:
        raise Gone(f"Version {version_id} of {resource_type}/{id} is a deletion.",
                   expression=resource_type)
    return _found(found, *subset)


def _found(stored: StoredVersion, summary: str | None = None,
           elements: tuple[str, ...] = ()) -> FhirResponse:
    shaped = shape_stored(stored.content or b"{}", summary, elements)
    if shaped is not None:
        return FhirResponse(200, resource=shaped, version=stored.version,
                            last_updated=stored.last_updated)
    return FhirResponse(200, raw=stored.content, version=stored.version,
                        last_updated=stored.last_updated)


def history(session: Session, request: FhirRequest, settings: Settings,
            resource_type: str | None = None, id: str | None = None) -> FhirResponse:
    """History bundle, newest first, paged with a cursor that stays stable under writes."""
    query = _history_query(request, settings, resource_type, id)
    if resource_type and id and session.current(resource_type, id) is None:
        raise NotFound(f"{resource_type}/{id} does not exist.", expression=resource_type)
    versions = session.history(query)
    entries = [_history_entry(request.base_url, stored) for stored in versions]
    return FhirResponse(200, resource=bundle("history", entries,
                                             link=_history_links(request, query, versions)))


def _history_query(request: FhirRequest, settings: Settings, resource_type: str | None,
                   id: str | None) -> HistoryQuery:
    since = at = cursor = None
    count = settings.search.default_count
    for name, value in request.query:
        if name == "_since":
            since = fhir_datetime_range(value, name="_since")[0]
        elif name == "_at":
            at = fhir_datetime_range(value, name="_at")
        elif name == "_count":
            count = min(non_negative(name, value), settings.search.max_count)
        elif name == "_cursor":
            cursor = non_negative(name, value)
        elif name in ("_format", "_pretty") or request.prefer_strict is False:
            continue
        else:
            raise BadRequest(f"History does not support the parameter '{name}'.",
                             expression=name, code="not-supported")
    return HistoryQuery(resource_type, id, since, at, count, cursor)


def _history_entry(base_url: str, stored: StoredVersion) -> dict[str, Any]:
    url = f"{stored.resource_type}/{stored.id}"
    entry: dict[str, Any] = {"fullUrl": f"{base_url}{url}"}
    if stored.content is not None:
        entry["resource"] = orjson.Fragment(stored.content)
    entry["request"] = {"method": stored.method,
                        "url": url if stored.method in ("PUT", "PATCH", "DELETE")
                        else stored.resource_type}
    entry["response"] = {"status": _STATUS_BY_METHOD.get(stored.method, "200 OK"),
                         "etag": f'W/"{stored.version}"',
                         "lastModified": format_instant(stored.last_updated)}
    return entry


def _history_links(request: FhirRequest, query: HistoryQuery,
                   versions: list[StoredVersion]) -> list[dict[str, str]]:
    path = "/".join(p for p in (query.resource_type, query.id) if p)
    prefix = f"{request.base_url}{path + '/' if path else ''}_history"
    kept = [(k, v) for k, v in request.query if k not in ("_cursor", "_count")]
    self_params = [*request.query] if request.query else []
    links = [{"relation": "self",
              "url": prefix + ("?" + urlencode(self_params) if self_params else "")}]
    if len(versions) == query.count and versions:
        next_params = [*kept, ("_count", str(query.count)), ("_cursor", str(versions[-1].seq))]
        links.append({"relation": "next", "url": f"{prefix}?{urlencode(next_params)}"})
    return links
