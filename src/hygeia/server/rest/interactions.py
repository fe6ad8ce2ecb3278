"""The REST interactions (read, vread, search, history, create, update, patch, delete
and their conditional forms), each run in a session the caller opened.

:meth:`FhirService.perform` looks an interaction up here by the router's name for
it; operations (``$name``) are not here but in the operation registry.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from hygeia.fhir.outcome import BadRequest
from hygeia.server.context import FhirRequest, FhirResponse, Settings
from hygeia.server.rest import read, search, write
from hygeia.server.rest.integrity import cascade_requested, delete_referrers, without_cascade
from hygeia.server.rest.router import Route
from hygeia.store import Session

Interaction = Callable[[Settings, Route, FhirRequest, Session], FhirResponse]


def _read(settings: Settings, route: Route, request: FhirRequest,
          session: Session) -> FhirResponse:
    return read.read(session, _t(route), _i(route), if_none_match=request.if_none_match,
                     if_modified_since=request.if_modified_since, params=request.query)


def _vread(settings: Settings, route: Route, request: FhirRequest,
           session: Session) -> FhirResponse:
    return read.vread(session, _t(route), _i(route), route.version or "", request.query)


def _search(settings: Settings, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    return search.search_type(session, request, _t(route), settings)


def _search_system(settings: Settings, route: Route, request: FhirRequest,
                   session: Session) -> FhirResponse:
    return search.search_system(session, request, settings)


def _search_compartment(settings: Settings, route: Route, request: FhirRequest,
                        session: Session) -> FhirResponse:
    return search.search_compartment(session, request, _t(route), _i(route),
                                     route.compartment_type or "", settings)


def _history(settings: Settings, route: Route, request: FhirRequest,
             session: Session) -> FhirResponse:
    return read.history(session, request, settings, route.resource_type, route.id)


def _create(settings: Settings, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    return write.create(session, _t(route), request.body, base_url=request.base_url,
                        if_none_exist=request.if_none_exist)


def _update(settings: Settings, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    return write.update(session, _t(route), _i(route), request.body,
                        base_url=request.base_url, if_match=request.if_match)


def _conditional_update(settings: Settings, route: Route, request: FhirRequest,
                        session: Session) -> FhirResponse:
    return write.conditional_update(session, _t(route), route.criteria or "", request.body,
                                    base_url=request.base_url, if_match=request.if_match)


def _delete(settings: Settings, route: Route, request: FhirRequest,
            session: Session) -> FhirResponse:
    cascade = cascade_requested(request.query, settings.referential_integrity)
    response = write.delete(session, _t(route), _i(route), if_match=request.if_match)
    if cascade:
        delete_referrers(session, (_t(route), _i(route)), request.base_url)
    return response


def _conditional_delete(settings: Settings, route: Route, request: FhirRequest,
                        session: Session) -> FhirResponse:
    cascade = cascade_requested(request.query, settings.referential_integrity)
    if not cascade:
        return write.conditional_delete(session, _t(route), route.criteria or "")
    criteria = urlencode(without_cascade(request.query))
    if not criteria:
        raise BadRequest(f"DELETE {_t(route)} needs search criteria besides _cascade.",
                         expression="criteria")
    match = write.resolve_criteria(session, _t(route), criteria, lock=True)
    if match.id is None:
        return FhirResponse(204)
    response = write.delete(session, _t(route), match.id)
    if cascade:
        delete_referrers(session, (_t(route), match.id), request.base_url)
    return response


def _patch(settings: Settings, route: Route, request: FhirRequest,
           session: Session) -> FhirResponse:
    return write.patch(session, _t(route), _i(route), request.body,
                       content_type=request.content_type, base_url=request.base_url,
                       if_match=request.if_match, limits=write.patch_limits(settings))


def _conditional_patch(settings: Settings, route: Route, request: FhirRequest,
                       session: Session) -> FhirResponse:
    return write.conditional_patch(session, _t(route), route.criteria or "", request.body,
                                   content_type=request.content_type,
                                   base_url=request.base_url, if_match=request.if_match,
                                   limits=write.patch_limits(settings))


def _t(route: Route) -> str:
    assert route.resource_type is not None
    return route.resource_type


def _i(route: Route) -> str:
    assert route.id is not None
    return route.id


INTERACTIONS: dict[str, Interaction] = {
    "read": _read,
    "vread": _vread,
    "search-type": _search,
    "search-system": _search_system,
    "search-compartment": _search_compartment,
    "history-instance": _history,
    "history-type": _history,
    "history-system": _history,
    "create": _create,
    "update": _update,
    "conditional-update": _conditional_update,
    "delete": _delete,
    "conditional-delete": _conditional_delete,
    "patch": _patch,
    "conditional-patch": _conditional_patch,
}
