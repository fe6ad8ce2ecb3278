"""Turn (method, path, query) into the FHIR interaction it names (http.html of the spec)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from hygeia.fhir.outcome import BadRequest, MethodNotAllowed, NotFound
from hygeia.fhir.resources import check_id, check_type
from hygeia.fhir.spec import is_resource_type
from hygeia.fhir.validation.primitives import shown

if TYPE_CHECKING:
    from hygeia.server.extensions import Operation, Operations

WRITES = frozenset({"create", "update", "conditional-update", "delete", "conditional-delete",
                    "patch", "conditional-patch"})
# written by the server alone: the audit trail cannot be changed through the API, whether
# auth is on or off, by any path (REST, batch and transaction entries all route here)
SERVER_WRITTEN_TYPES = frozenset({"AuditEvent"})
OPERATION = "operation"  # the interaction of an operation no registry has resolved
_OPERATION_NAME = re.compile(r"\$[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Route:
    """The interaction a request asks for, with its target."""

    interaction: str
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    criteria: str | None = None
    compartment_type: str | None = None
    file: str | None = None  # an output file of a background job
    operation_name: str | None = None  # "$name" of an operation
    operation: Operation | None = None  # its registration, once resolved

    @property
    def writes(self) -> bool:
        return self.interaction in WRITES


def parse_route(method: str, path: str, query: list[tuple[str, str]],
                operations: Operations | None = None) -> Route:
    """Map a request onto a FHIR interaction, or raise 404/405 with an OperationOutcome.

    A ``$name`` is looked up in ``operations``: the route's interaction is then the
    operation's own name and ``route.operation`` its registration. Without a registry
    (a caller that only needs the request's shape) it is the interaction ``operation``.
    """
    if not query and "$" not in path:  # no operation, no criteria: the same every time
        return _plain_route(method, path)
    return _parsed_route(method, path, query, operations)


@lru_cache(maxsize=1024)
def _plain_route(method: str, path: str) -> Route:
    """The route of a path without query or operation, remembered (routes are frozen):
    every single create and every entry of a transaction Bundle asks for one, and
    they name a few paths (``POST Observation``) over and over.  Errors are raised
    every time, never remembered."""
    return _parsed_route(method, path, [], None)


def _parsed_route(method: str, path: str, query: list[tuple[str, str]],
                  operations: Operations | None) -> Route:
    route = _route(method.upper(), path, query)
    if route.interaction == OPERATION and operations is not None:
        assert route.operation_name is not None
        registered = operations.resolve(method.upper(), route.operation_name,
                                        route.resource_type, route.id is not None)
        route = Route(registered.interaction, route.resource_type, route.id,
                      operation_name=route.operation_name, operation=registered)
    if route.writes and route.resource_type in SERVER_WRITTEN_TYPES:
        raise MethodNotAllowed(f"{route.resource_type} is written by the server alone; it "
                               "cannot be created, changed or deleted through the API.",
                               expression=route.resource_type)
    return route


def _route(method: str, path: str, query: list[tuple[str, str]]) -> Route:
    parts = [part for part in path.strip("/").split("/") if part]
    method = method.upper()
    if not parts:
        return _system_route(method, bool(query))
    if parts == ["_search"]:
        return _only(method, "POST", Route("search-system"))
    if parts[0].startswith("$"):
        return _operation(parts, None, None)
    if parts[0] in ("metadata", "openapi.json", "_history"):
        return _system_named_route(method, parts)
    if parts[0] == "_job":
        return _job_route(method, parts)
    resource_type = check_type(parts[0])
    criteria = urlencode(query) if query else None
    if len(parts) == 1:
        return _type_route(method, resource_type, criteria)
    if parts[1] == "_history" and len(parts) == 2:
        return _only(method, "GET", Route("history-type", resource_type))
    if parts[1] == "_search" and len(parts) == 2:
        return _only(method, "POST", Route("search-type", resource_type))
    if parts[1].startswith("$"):
        return _operation(parts[1:], resource_type, None)
    id = check_id(parts[1])
    if len(parts) > 2 and parts[2].startswith("$"):
        return _operation(parts[2:], resource_type, id)
    return _instance_route(method, resource_type, id, parts[2:])


def _system_route(method: str, has_query: bool) -> Route:
    if method == "POST":
        return Route("bundle")
    if method in ("GET", "HEAD") and has_query:
        return Route("search-system")
    raise MethodNotAllowed(f"{method} on the FHIR base is not supported; POST a batch or "
                           "transaction Bundle, search with ?_type=..., or GET metadata or "
                           "_history.")


def _system_named_route(method: str, parts: list[str]) -> Route:
    name = parts[0]
    if len(parts) > 1:
        raise NotFound(f"There is nothing at '{'/'.join(parts)}'.")
    if name == "metadata":
        return _only(method, "GET", Route("capabilities"))
    if name == "openapi.json":
        return _only(method, "GET", Route("openapi"))
    return _only(method, "GET", Route("history-system"))


def _type_route(method: str, resource_type: str, criteria: str | None) -> Route:
    by_method = {"GET": "search-type", "POST": "create", "PUT": "conditional-update",
                 "DELETE": "conditional-delete", "PATCH": "conditional-patch"}
    if method not in by_method:
        raise MethodNotAllowed(f"{method} is not allowed on {resource_type}.")
    interaction = by_method[method]
    if interaction.startswith("conditional") and not criteria:
        raise BadRequest(f"{method} {resource_type} needs search criteria in the URL "
                         f"(e.g. {resource_type}?identifier=system|value).",
                         expression="criteria")
    return Route(interaction, resource_type, criteria=criteria)


def _instance_route(method: str, resource_type: str, id: str, rest: list[str]) -> Route:
    if not rest:
        by_method = {"GET": "read", "HEAD": "read", "PUT": "update", "DELETE": "delete",
                     "PATCH": "patch"}
        if method not in by_method:
            raise MethodNotAllowed(f"{method} is not allowed on {resource_type}/{id}.")
        return Route(by_method[method], resource_type, id)
    if rest == ["_history"]:
        return _only(method, "GET", Route("history-instance", resource_type, id))
    if len(rest) == 2 and rest[0] == "_history":
        return _only(method, "GET", Route("vread", resource_type, id, rest[1]))
    if len(rest) == 1 and is_resource_type(rest[0]):
        return _only(method, "GET", Route("search-compartment", resource_type, id,
                                          compartment_type=rest[0]))
    raise NotFound(f"There is nothing at '{resource_type}/{id}/{'/'.join(rest)}'.")


def _operation(parts: list[str], resource_type: str | None, id: str | None) -> Route:
    """``[$name]`` after the target: an operation, still to be resolved."""
    name = parts[0]
    if len(parts) > 1:
        raise NotFound(f"There is nothing at '.../{'/'.join(parts)}'.")
    if not _OPERATION_NAME.fullmatch(name):
        target = "[base] (the system level)" if resource_type is None else \
            f"{resource_type}/[id]" if id is not None else resource_type
        raise unsupported_operation(name, target, resource_type)
    return Route(OPERATION, resource_type, id, operation_name=name)


def unsupported_operation(name: str, target: str, expression: str | None = None,
                          offered: str | None = None) -> NotFound:
    """The 404 of an operation this server does not offer on ``target`` (a type,
    ``Type/[id]`` or the system level), saying where it is offered (``offered``) if
    anywhere."""
    shown_name = name if _OPERATION_NAME.fullmatch(name) else shown(name)
    hint = f" It is offered on {offered}." if offered else ""
    return NotFound(f"The operation {shown_name} is not supported on {target}.{hint}",
                    expression=expression,
                    code="not-supported")


def _job_route(method: str, parts: list[str]) -> Route:
    """``_job/ID`` (status: GET, cancel: DELETE) and ``_job/ID/FILE`` (an output file)."""
    if len(parts) == 2:
        job_id = check_id(parts[1])
        if method == "DELETE":
            return Route("job-cancel", id=job_id)
        return _only(method, "GET", Route("job-status", id=job_id))
    if len(parts) == 3:
        return _only(method, "GET", Route("job-file", id=check_id(parts[1]), file=parts[2]))
    raise NotFound(f"There is nothing at '{'/'.join(parts)}'.")


def _only(method: str, allowed: str, route: Route) -> Route:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise MethodNotAllowed(f"{method} is not allowed here; use {allowed}.")
    return route
