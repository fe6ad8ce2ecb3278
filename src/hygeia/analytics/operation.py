"""``$viewdefinition-run``: run a ViewDefinition over the store and stream its rows.

Offered at the system level (``[base]/$viewdefinition-run``), the type level
(``ViewDefinition/$viewdefinition-run``) and the instance level
(``ViewDefinition/{id}/$viewdefinition-run``), with the parameters of the SQL on
FHIR v2 OperationDefinition. In a POST they come in a Parameters body, where
``_format`` selects the row encoding (json, ndjson, csv, parquet) outside FHIR
content negotiation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hygeia.analytics.formats import ALIASES, FORMATS, format_name
from hygeia.analytics.run import compiled, run_encoded
from hygeia.analytics.source import Selection, stored_resources
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest, Forbidden, NotFound
from hygeia.fhir.search.query import parse_query
from hygeia.server import FhirResponse
from hygeia.server.extensions import Host, Operation, OperationCall

DEFINITION = "https://sql-on-fhir.org/ig/OperationDefinition/$viewdefinition-run"
NAME = "viewdefinition-run"
MAX_LIMIT = 10_000_000
# the row formats of a GET's _format (json is FHIR's own and always passes the HTTP edge)
OWN_FORMATS = frozenset(
    {name for name in FORMATS if name != "json"}
    | {alias for alias, name in ALIASES.items() if name != "json"}
)
_SCALARS = ("_format", "header", "viewReference", "patient", "group", "source", "_limit", "_since")


@dataclass
class RunParameters:
    """The operation's parameters, from the query string and a Parameters body."""

    values: dict[str, Any] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, Any] | None = None


def parameters(call: OperationCall) -> RunParameters:
    found = RunParameters()
    for name, value in call.request.query:
        if name in _SCALARS:
            found.values[name] = value
    body = call.request.body
    if body is None:
        return found
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest(
            "A POST $viewdefinition-run takes a Parameters resource.", expression="resourceType"
        )
    for index, part in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise BadRequest("Each parameter needs a name.", expression=where)
        name = part["name"]
        if name == "viewResource":
            if not isinstance(part.get("resource"), dict):
                raise BadRequest(
                    "viewResource needs a ViewDefinition in 'resource'.",
                    expression=f"{where}.resource",
                )
            found.view = part["resource"]
        elif name == "resource":
            if not isinstance(part.get("resource"), dict):
                raise BadRequest(
                    "resource needs a FHIR resource in 'resource'.", expression=f"{where}.resource"
                )
            found.resources.append(part["resource"])
        elif name in _SCALARS:
            values = [v for k, v in part.items() if k.startswith("value")]
            if len(values) != 1:
                raise BadRequest(
                    f"The parameter {name} needs exactly one value[x].", expression=where
                )
            value = values[0]
            found.values[name] = value.get("reference") if isinstance(value, dict) else value
        else:
            raise BadRequest(f"$viewdefinition-run has no parameter '{name}'.", expression=where)
    return found


def _stored_view(host: Host, reference: str) -> dict[str, Any]:
    """The ViewDefinition a ``viewReference`` names: ``ViewDefinition/{id}`` or its url."""
    with host.reader() as session:
        if reference.startswith("ViewDefinition/") and reference.count("/") == 1:
            stored = session.current("ViewDefinition", reference.split("/", 1)[1])
            if stored is None or stored.deleted or stored.content is None:
                raise NotFound(f"{reference} is not on this server.", expression="viewReference")
            return dict(orjson.loads(stored.content))
        query = parse_query("ViewDefinition", [("url", reference)], registry=host.registry)
        matches = session.search(query).matches
        if len(matches) != 1 or matches[0].content is None:
            raise NotFound(
                f"No single ViewDefinition has the url {reference!r}.", expression="viewReference"
            )
        return dict(orjson.loads(matches[0].content))


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise BadRequest(f"{name} must be true or false.", expression=name)


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise BadRequest("_limit must be a positive integer.", expression="_limit") from None
    if not 0 < limit <= MAX_LIMIT:
        raise BadRequest(f"_limit must be between 1 and {MAX_LIMIT}.", expression="_limit")
    return limit


def _patients(host: Host, values: dict[str, Any]) -> tuple[str, ...] | None:
    patient, group = values.get("patient"), values.get("group")
    if patient is not None and group is not None:
        raise BadRequest("Give patient or group, not both.", expression="group")
    if patient is not None:
        return (str(patient).removeprefix("Patient/"),)
    if group is None:
        return None
    group_id = str(group).removeprefix("Group/")
    with host.reader() as session:
        stored = session.current("Group", group_id)
    if stored is None or stored.deleted or stored.content is None:
        raise NotFound(f"Group/{group_id} is not on this server.", expression="group")
    members = orjson.loads(stored.content).get("member") or []
    return tuple(
        str(member.get("entity", {}).get("reference", "")).removeprefix("Patient/")
        for member in members
        if str(member.get("entity", {}).get("reference", "")).startswith("Patient/")
    )


def _since(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return fhir_datetime_range(str(value), name="_since")[0]
    except BadRequest as error:
        raise BadRequest(f"_since must be an instant: {error}", expression="_since") from error


def _check_scope(call: OperationCall, resource_type: str, given: bool) -> None:
    """A run reads a whole type outside the request's guarded session, so (as for bulk
    export) the token must read that type whole: system/ or user/ scope, unconstrained."""
    access = call.request.access
    if access is None or given:
        return
    if not any(r.unrestricted for r in access.restrictions(resource_type, "r")):
        raise Forbidden(
            f"This access token may not read every {resource_type}: running a "
            "view needs a system/ or user/ read scope for the whole type.",
            code="forbidden",
            expression="resource",
        )


def run_view(call: OperationCall) -> FhirResponse:
    given = parameters(call)
    values = given.values
    if values.get("source") is not None:
        raise BadRequest(
            "source is not supported: views run over this server's own store "
            "(or the resources given in 'resource').",
            expression="source",
        )
    kind = format_name(None if values.get("_format") is None else str(values["_format"]))
    if kind is None:
        raise BadRequest(
            f"_format {values['_format']!r} is not supported; use json, ndjson, csv or parquet.",
            expression="_format",
        )
    if call.level == "instance":
        assert call.id is not None
        raw = _stored_view(call.host, f"ViewDefinition/{call.id}")
    elif given.view is not None:
        raw = given.view
    elif values.get("viewReference") is not None:
        raw = _stored_view(call.host, str(values["viewReference"]))
    else:
        raise BadRequest("Name the view: viewReference or viewResource.", expression="viewResource")
    view = compiled(raw)
    _check_scope(call, view.resource, bool(given.resources))
    header = _boolean(values.get("header", True), "header")
    limit = _limit(values.get("_limit"))
    resources: Iterable[dict[str, Any]]
    if given.resources:
        resources = given.resources
    else:
        selection = Selection(
            view.resource, _since(values.get("_since")), _patients(call.host, values)
        )
        resources = stored_resources(call.host.reader, selection)
    encoded = run_encoded(view, resources, kind, header, limit)
    return FhirResponse(200, stream=encoded.chunks, media_type=encoded.media_type)


def viewdefinition_run_operation() -> Operation:
    return Operation(
        NAME,
        run_view,
        DEFINITION,
        system=True,
        types=frozenset({"ViewDefinition"}),
        instances=frozenset({"ViewDefinition"}),
        methods=("GET", "POST"),
        session="none",
        access="r",
        documentation="Run a SQL on FHIR v2 ViewDefinition and stream its rows "
        "(docs/guide/analytics.md).",
        formats=OWN_FORMATS,
    )
