"""Bulk Data ``$export`` kick-off (FHIR Bulk Data Access IG 2.0, export.html).

The kick-off request is checked completely before anything is queued, so a
bad parameter is a 400 with an OperationOutcome, never a failed job; what
the job needs (types, filters, the patients of a Group, the instant the
export describes) is fixed here and stored with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson

from hygeia.fhir.datetime import fhir_datetime_range, format_instant, now_us
from hygeia.fhir.outcome import BadRequest, Forbidden, NotFound, information
from hygeia.fhir.search.parameters import SearchRegistry
from hygeia.fhir.search.query import Query, SearchLimits, parse_query
from hygeia.fhir.spec import (
    is_resource_type,
    logical_types,
    patient_compartment,
    resource_types,
)
from hygeia.server.auth.operations import client_of, export_types
from hygeia.server.context import FhirRequest, FhirResponse
from hygeia.server.jobs.status import status_url
from hygeia.store import Session

if TYPE_CHECKING:
    from hygeia.server.extensions import Host

EXPORT = "export"
OUTPUT_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
SUPPORTED = {"_outputFormat", "_since", "_type", "_elements", "_typeFilter", "patient",
             "includeAssociatedData"}
# includeAssociatedData values (export.html, ValueSet include-associated-data)
LATEST_PROVENANCE = "LatestProvenanceResources"
RELEVANT_PROVENANCE = "RelevantProvenanceResources"
ASSOCIATED_DATA = {LATEST_PROVENANCE, RELEVANT_PROVENANCE}
# a _typeFilter value starts with its type: "MedicationRequest?status=active"
_FILTER_START = re.compile(r"[A-Z][A-Za-z]+\?")
_ELEMENT = re.compile(r"(?:[A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*")


@dataclass
class ExportRequest:
    """A checked kick-off request: everything the export job needs, as plain data."""

    level: str  # system | patient | group
    types: list[str]
    until: int
    request_url: str
    since: int | None = None
    group: str | None = None
    patients: list[str] | None = None
    filters: dict[str, list[str]] = field(default_factory=dict)
    elements: list[str] = field(default_factory=list)
    # what was left out, for the error file: [text, the parameter it concerns]
    warnings: list[list[str]] = field(default_factory=list)
    associated: list[str] = field(default_factory=list)  # includeAssociatedData values
    client: str | None = None  # the client that started it (auth on): only it may follow it

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportRequest:
        return cls(**data)


def kick_off(host: Host, request: FhirRequest, level: str,
             group_id: str | None = None) -> FhirResponse:
    """Check the request, queue the export job and point the client at its status URL."""
    if not request.prefer_async:
        raise BadRequest("$export runs asynchronously: send the header "
                         "'Prefer: respond-async'.", expression="Prefer")
    params = _parameters(request)
    with host.reader() as session:  # a Group's members are read in the same snapshot
        export = _checked(params, level, request, session, host.registry, group_id)
    export.types = export_types(request.access, export.types,
                                explicit=any(name == "_type" for name, _ in params))
    if export.associated:
        _check_provenance_readable(request)
    export.client = client_of(request.access)
    job = host.jobs.submit(EXPORT, export.to_json(), now_us())
    host.wake_jobs()
    location = status_url(request, job.id)
    return FhirResponse(202, resource=information(f"Export started; poll {location}."),
                        headers={"Content-Location": location})


def _check_provenance_readable(request: FhirRequest) -> None:
    """includeAssociatedData writes Provenance whatever ``_type`` says: the token must
    be allowed to export Provenance too."""
    try:
        export_types(request.access, ["Provenance"], explicit=True)
    except Forbidden as error:
        raise Forbidden(f"includeAssociatedData exports Provenance: "
                        f"{error.issues[0].diagnostics}", code="forbidden",
                        expression="includeAssociatedData") from None


def _parameters(request: FhirRequest) -> list[tuple[str, Any]]:
    """Query parameters, plus those of a POSTed Parameters resource."""
    params: list[tuple[str, Any]] = list(request.query)
    body = request.body
    if body is None:
        return params
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("A POST $export takes a Parameters resource.",
                         expression="resourceType")
    for index, part in enumerate(body.get("parameter") or []):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise BadRequest("Each parameter needs a name.", expression=f"parameter[{index}]")
        values = [value for key, value in part.items() if key.startswith("value")]
        if len(values) != 1:
            raise BadRequest(f"The parameter {part['name']} needs exactly one value[x].",
                             expression=f"parameter[{index}]")
        params.append((part["name"], values[0]))
    return params


def _checked(params: list[tuple[str, Any]], level: str, request: FhirRequest,
             session: Session, registry: SearchRegistry, group_id: str | None
             ) -> ExportRequest:
    names = {name for name, _ in params}
    lenient = request.prefer_lenient
    warnings = _unsupported(names, request)
    for name, value in params:
        if name == "_outputFormat" and value not in OUTPUT_FORMATS:
            raise BadRequest(f"_outputFormat '{value}' is not supported; use "
                             "application/fhir+ndjson.", expression="_outputFormat")
    until = now_us()
    export = ExportRequest(level=level, types=_types(params, level, warnings), until=until,
                           request_url=_request_url(request), warnings=warnings)
    export.since = _since(params, until)
    export.elements = _elements(params)
    export.filters = _filters(params, export.types, registry, export.warnings, lenient)
    export.associated = _associated_data(params, export.warnings, lenient)
    patients = _patient_parameter(params, level)
    if level == "group":
        assert group_id is not None
        export.group = group_id
        members = _group_members(session, group_id)
        export.patients = members if patients is None else _known(
            patients, set(members), f"not members of Group/{group_id}", export.warnings)
    elif patients is not None:
        stored = {id for id in patients if _exists(session, "Patient", id)}
        export.patients = _known(patients, stored, "not on this server", export.warnings)
    return export


def _known(patients: list[str], known: set[str], why: str, warnings: list[list[str]]) -> list[str]:
    """The asked patients that can be exported; the others are reported in the error file
    (export.html, patient: "the server SHOULD return details via a FHIR OperationOutcome")."""
    missing = [id for id in patients if id not in known]
    if missing:
        warnings.append([f"patient: {', '.join(f'Patient/{id}' for id in missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} {why}; nothing was "
                         "exported for them.", "patient"])
    return list(dict.fromkeys(id for id in patients if id in known))


def _exists(session: Session, kind: str, id: str) -> bool:
    current = session.current(kind, id)
    return current is not None and not current.deleted


def _unsupported(names: set[str], request: FhirRequest) -> list[list[str]]:
    """Unknown parameters are an error, or ignored with a warning under handling=lenient."""
    unknown = sorted(names - SUPPORTED)
    if unknown and not request.prefer_lenient:
        raise BadRequest(f"$export does not support the parameter(s) {', '.join(unknown)}; "
                         "send 'Prefer: handling=lenient' to have them ignored.",
                         expression=unknown[0])
    return [[f"The parameter {name} is not supported and was ignored.", name]
            for name in unknown]


def _system_export_types() -> list[str]:
    """What a system export without ``_type`` holds: every type, less the logical types
    that declare themselves out of it (hygeia.fhir.spec.logical)."""
    logical = logical_types()
    return sorted(name for name in resource_types()
                  if name not in logical or logical[name].system_export)


def _types(params: list[tuple[str, Any]], level: str, warnings: list[list[str]]) -> list[str]:
    """The types asked for; at Patient and Group level, those outside the Patient
    compartment are left out and reported, and only a request naming none inside fails."""
    compartment = {"Patient", *patient_compartment()}
    default = sorted(compartment) if level != "system" else _system_export_types()
    asked = [kind.strip() for name, value in params if name == "_type"
             for kind in str(value).split(",") if kind.strip()]
    if not asked:
        return default
    for kind in asked:
        if not is_resource_type(kind):
            raise BadRequest(f"_type names '{kind}', which is not a resource type this server "
                             "stores.",
                             expression="_type")
    if level == "system":
        return sorted(set(asked))
    outside = sorted(set(asked) - compartment)
    inside = sorted(set(asked) & compartment)
    if not inside:
        raise BadRequest(f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not in "
                         "the Patient compartment, so a patient or group export cannot "
                         "include them, and _type names no other type.", expression="_type")
    if outside:
        warnings.append([f"_type: {', '.join(outside)} "
                         f"{'is' if len(outside) == 1 else 'are'} not in the Patient "
                         "compartment, so this export leaves "
                         f"{'it' if len(outside) == 1 else 'them'} out.", "_type"])
    return inside


def _since(params: list[tuple[str, Any]], until: int) -> int | None:
    """``_since`` as microseconds; an instant after the kick-off is a 400 (nothing could
    have changed after it, so the client has a clock or a typing error)."""
    values = [str(value) for name, value in params if name == "_since"]
    if not values:
        return None
    if "T" not in values[-1]:
        raise BadRequest(f"_since '{values[-1]}' must be a FHIR instant with a time and "
                         "time zone, e.g. 2024-01-01T00:00:00Z.", expression="_since")
    since = fhir_datetime_range(values[-1], name="_since")[0]
    if since > until:
        raise BadRequest(f"_since '{values[-1]}' is in the future (the server's time is "
                         f"{format_instant(until)}).", expression="_since")
    return since


def _elements(params: list[tuple[str, Any]]) -> list[str]:
    elements = [part.strip() for name, value in params if name == "_elements"
                for part in str(value).split(",") if part.strip()]
    for element in elements:
        if not _ELEMENT.fullmatch(element):
            raise BadRequest(f"_elements '{element}' is not an element name (e.g. 'status' or "
                             "'Observation.code').", expression="_elements")
    return elements


def _filters(params: list[tuple[str, Any]], types: list[str], registry: SearchRegistry,
             warnings: list[list[str]], lenient: bool) -> dict[str, list[str]]:
    """The ``_typeFilter`` criteria per type.  A filter the server cannot apply is a 400,
    or under ``handling=lenient`` left out and reported in the error file (export.html)."""
    filters: dict[str, list[str]] = {}
    for name, value in params:
        if name != "_typeFilter":
            continue
        for text in _split_filters(str(value)):
            try:
                kind, criteria = _checked_filter(text, types, registry)
            except BadRequest as error:
                if not lenient:
                    raise
                warnings.append([f"{error.issues[0].diagnostics} It was ignored "
                                 "(Prefer: handling=lenient).", "_typeFilter"])
                continue
            if kind not in types:
                warnings.append([f"_typeFilter '{text}' names {kind}, which is not "
                                 "exported; it was ignored.", "_typeFilter"])
                continue
            filters.setdefault(kind, []).append(criteria)
    return filters


def _checked_filter(text: str, types: list[str],
                    registry: SearchRegistry) -> tuple[str, str]:
    kind, _, criteria = text.partition("?")
    if not is_resource_type(kind) or not criteria:
        raise BadRequest(f"_typeFilter '{text}' must look like Type?param=value.",
                         expression="_typeFilter")
    if kind in types:
        parse_filter(kind, criteria, registry)
    return kind, criteria


def _associated_data(params: list[tuple[str, Any]], warnings: list[list[str]],
                     lenient: bool) -> list[str]:
    """``includeAssociatedData`` values, comma-separated or repeated; an unknown one is a
    400, or reported and ignored under ``handling=lenient``."""
    asked = [part.strip() for name, value in params if name == "includeAssociatedData"
             for part in str(value).split(",") if part.strip()]
    known = []
    for value in asked:
        if value in ASSOCIATED_DATA:
            known.append(value)
            continue
        text = (f"includeAssociatedData '{value}' is not supported; Hygeia supports "
                f"{' and '.join(sorted(ASSOCIATED_DATA))}.")
        if not lenient:
            raise BadRequest(text, expression="includeAssociatedData")
        warnings.append([f"{text} It was ignored (Prefer: handling=lenient).",
                         "includeAssociatedData"])
    return sorted(set(known))


def _split_filters(value: str) -> list[str]:
    """Split comma-separated filters, but only at a comma followed by a new ``Type?``."""
    starts = [0] + [match.start() + 1 for match in re.finditer(",", value)
                    if _FILTER_START.match(value, match.start() + 1)]
    bounds = [*starts, len(value) + 1]
    return [value[bounds[i]:bounds[i + 1] - 1] for i in range(len(starts))]


def parse_filter(kind: str, criteria: str, registry: SearchRegistry) -> Query:
    """A _typeFilter as a search: strict, and search parameters only."""
    try:
        query = parse_query(kind, parse_qsl(criteria, keep_blank_values=True), strict=True,
                            registry=registry, limits=SearchLimits())
    except BadRequest as error:
        raise BadRequest(f"_typeFilter '{kind}?{criteria}': {error.issues[0].diagnostics}",
                         expression="_typeFilter") from None
    options = query.options
    if options.sort or options.includes or options.revincludes or options.summary \
            or options.elements or options.count_given or not query.clauses:
        raise BadRequest(f"_typeFilter '{kind}?{criteria}' may hold only search parameters "
                         "(no _sort, _include, _count, _summary or _elements).",
                         expression="_typeFilter")
    return query


def _patient_parameter(params: list[tuple[str, Any]], level: str) -> list[str] | None:
    references = [value for name, value in params if name == "patient"]
    if not references:
        return None
    if level == "system":
        raise BadRequest("The patient parameter applies to Patient and Group exports only.",
                         expression="patient")
    ids = []
    for value in references:
        reference = value.get("reference") if isinstance(value, dict) else value
        kind, _, id = str(reference or "").partition("/")
        if kind != "Patient" or not id or "/" in id:
            raise BadRequest(f"patient '{reference}' must be a reference like Patient/123.",
                             expression="patient")
        ids.append(id)
    return ids


def _group_members(session: Session, group_id: str) -> list[str]:
    """The Patients the Group lists as active members (``Group.member.entity``)."""
    current = session.current("Group", group_id)
    if current is None or current.deleted or current.content is None:
        raise NotFound(f"Group/{group_id} does not exist.", expression="id")
    group = orjson.loads(current.content)
    members = []
    for member in group.get("member") or []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        kind, _, id = str((member.get("entity") or {}).get("reference") or "").partition("/")
        if kind == "Patient" and id:
            members.append(id)
    return sorted(set(members))


def _request_url(request: FhirRequest) -> str:
    query = f"?{urlencode(request.query, quote_via=quote)}" if request.query else ""
    return f"{request.base_url}{request.path}{query}"


def transaction_time(export: ExportRequest) -> str:
    return format_instant(export.until)
