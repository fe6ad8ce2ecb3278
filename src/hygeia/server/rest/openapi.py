"""An OpenAPI 3.0 document derived from the CapabilityStatement (``GET /fhir/openapi.json``).

The statement is the one list of what the server implements; this module only
translates it, so the two cannot disagree. The schemas are deliberately small
(a body is "a JSON object whose resourceType is this type"): the document is
for API tools and fuzzers (schemathesis in CI), which need every route, method
and parameter, not the FHIR structure definitions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hygeia.server.rest.capability import RESULT_PARAMETERS

if TYPE_CHECKING:
    from hygeia.server.extensions import Operation
    from hygeia.server.rest.operations import OperationRegistry

OPENAPI_VERSION = "3.0.3"
FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"

_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}
# ranges, not each status, keep the document small (it has some 1,000 paths)
_RESPONSES = {"2XX": {"$ref": "#/components/responses/Resource"},
              "304": {"description": "Not modified"},
              "4XX": {"$ref": "#/components/responses/Error"}}


def openapi_document(statement: dict[str, Any], server_url: str,
                     operations: OperationRegistry) -> dict[str, Any]:
    """The OpenAPI document of ``statement``, served at ``server_url`` (the FHIR base);
    ``operations`` says at which level and with which methods each listed operation runs."""
    rest = statement["rest"][0]
    paths: dict[str, Any] = {}
    for entry in rest["resource"]:
        paths.update(_type_paths(entry, operations))
    paths.update(_system_paths(rest, operations))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"{statement['software']['name']} FHIR R4 API",
                 "version": statement["software"]["version"],
                 "description": "Generated from the CapabilityStatement at /metadata, "
                                "which is authoritative."},
        "servers": [{"url": server_url.rstrip("/")}],
        "paths": paths,
        "components": _components(),
    }


def _type_paths(entry: dict[str, Any], operations: OperationRegistry) -> dict[str, Any]:
    """The paths of one ``rest.resource`` entry: its interactions and operations."""
    type_ = entry["type"]
    codes = {interaction["code"] for interaction in entry["interaction"]}
    search = [*(_query_parameter(p) for p in entry.get("searchParam", [])),
              *_result_parameters()]
    base, instance = f"/{type_}", f"/{type_}/{{id}}"
    paths: dict[str, dict[str, Any]] = {base: {}, instance: {"parameters": [_path_id("id")]}}
    if "search-type" in codes:
        paths[base]["get"] = _op(f"search{type_}", type_, f"Search {type_}", search)
        paths[f"{base}/_search"] = {"post": _op(f"search{type_}Post", type_,
                                                f"Search {type_} (form)", [],
                                                _form_body(entry))}
    if "create" in codes:
        paths[base]["post"] = _op(f"create{type_}", type_, f"Create a {type_}", [],
                                  _resource_body(type_))
        paths[base]["post"]["responses"] = {**_RESPONSES, "201": _created(type_, codes)}
    _instance_methods(paths[instance], type_, codes)
    if "enforced" in entry.get("referencePolicy", ()) and "delete" in paths[instance]:
        paths[instance]["delete"]["parameters"] = [_cascade_parameter()]
    paths.update(_history_paths(type_, codes))
    for operation in entry.get("operation", []):
        paths.update(_operation_paths(type_, operations.get(operation["name"])))
    return {path: item for path, item in paths.items() if set(item) - {"parameters"}}


def _instance_methods(item: dict[str, Any], type_: str, codes: set[str]) -> None:
    if "read" in codes:
        item["get"] = _op(f"read{type_}", type_, f"Read a {type_}")
    if "update" in codes:
        item["put"] = _op(f"update{type_}", type_, f"Update (or create) a {type_}", [],
                          _resource_body(type_))
    if "patch" in codes:
        item["patch"] = _op(f"patch{type_}", type_, f"Patch a {type_}", [], _patch_body(type_))
    if "delete" in codes:
        item["delete"] = _op(f"delete{type_}", type_, f"Delete a {type_}")


def _history_paths(type_: str, codes: set[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    if "history-type" in codes:
        paths[f"/{type_}/_history"] = {"get": _op(f"history{type_}", type_,
                                                  f"History of all {type_}s",
                                                  _history_parameters())}
    if "history-instance" in codes:
        paths[f"/{type_}/{{id}}/_history"] = {
            "parameters": [_path_id("id")],
            "get": _op(f"history{type_}Instance", type_, f"History of one {type_}",
                       _history_parameters())}
    if "vread" in codes:
        paths[f"/{type_}/{{id}}/_history/{{vid}}"] = {
            "parameters": [_path_id("id"), _path_id("vid")],
            "get": _op(f"vread{type_}", type_, f"Read one version of a {type_}")}
    return paths


def _operation_paths(type_: str | None, operation: Operation | None) -> dict[str, Any]:
    """``$name`` on the system (``type_`` None), on ``type_`` and/or on its instances."""
    if operation is None:
        return {}
    name = operation.name
    paths: dict[str, Any] = {}
    places = [(type_, False)] if type_ is None else \
        [(type_, instance) for instance in (False, True) if operation.offered_at(type_, instance)]
    for where, instance in places:
        path = f"/{where}/{{id}}/${name}" if instance else \
            f"/{where}/${name}" if where else f"/${name}"
        tag = where or "System"
        item: dict[str, Any] = {"parameters": [_path_id("id")]} if instance else {}
        for method in (m.lower() for m in operation.methods):
            body = _resource_body(where) if name == "validate" and where else \
                _any_body() if method == "post" else None
            level = "Instance" if instance else ""
            item[method] = _op(f"{name}{where or 'System'}{level}{method.title()}", tag,
                               f"${name}", [], body)
        paths[path] = item
    return paths


def _system_paths(rest: dict[str, Any], operations: OperationRegistry) -> dict[str, Any]:
    codes = {interaction["code"] for interaction in rest.get("interaction", [])}
    search = [_query_parameter(p) for p in rest.get("searchParam", [])]
    paths: dict[str, Any] = {"/metadata": {"get": _op("capabilities", "System",
                                                      "The CapabilityStatement")}}
    root: dict[str, Any] = {}
    if codes & {"transaction", "batch"}:
        root["post"] = _op("transaction", "System", "A batch or transaction Bundle", [],
                           _resource_body("Bundle"))
    if "search-system" in codes:
        root["get"] = _op("searchSystem", "System", "Search all types", search)
    if root:
        paths["/"] = root
    if "history-system" in codes:
        paths["/_history"] = {"get": _op("historySystem", "System", "History of everything",
                                         _history_parameters())}
    for operation in rest.get("operation", []):
        paths.update(_operation_paths(None, operations.get(operation["name"])))
    return paths


# what a client can do next with a resource it created (OpenAPI links: they let
# schemathesis's stateful phase read, change and delete resources that exist)
_NEXT = {"read": "read", "update": "update", "patch": "patch", "delete": "delete",
         "history-instance": "history", "vread": "vread"}


def _created(type_: str, codes: set[str]) -> dict[str, Any]:
    """The 201 of a create, with a link to each instance interaction of the new id."""
    links: dict[str, Any] = {}
    for code, prefix in _NEXT.items():
        if code in codes:
            suffix = "Instance" if code == "history-instance" else ""
            parameters = {"id": "$response.body#/id"}
            if code == "vread":
                parameters["vid"] = "$response.body#/meta/versionId"
            links[code] = {"operationId": f"{prefix}{type_}{suffix}", "parameters": parameters}
    return {"description": f"The {type_} created", "links": links,
            "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}}}


def _cascade_parameter() -> dict[str, Any]:
    """``_cascade=delete`` (HAPI's convention, server/integrity.py), on servers that
    enforce referential integrity."""
    return {"name": "_cascade", "in": "query", "required": False,
            "description": "delete: also delete, recursively, the resources that refer to "
                           "this one (at most 1,000); without it such a delete answers 409",
            "schema": {"type": "string", "enum": ["delete"]}}


def _op(operation_id: str, tag: str, summary: str,
        parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id, "tags": [tag], "summary": summary,
        "responses": _RESPONSES}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _query_parameter(search_param: dict[str, Any]) -> dict[str, Any]:
    return {"name": search_param["name"], "in": "query", "required": False,
            "description": f"A {search_param['type']} search parameter.",
            "schema": {"type": "string"}}


def _result_parameters() -> list[dict[str, Any]]:
    return [{"$ref": f"#/components/parameters/{name}"} for name in RESULT_PARAMETERS]


def _history_parameters() -> list[dict[str, Any]]:
    return [{"$ref": f"#/components/parameters/{name}"} for name in ("_count", "_since")]


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _ID}


def _resource_body(type_: str) -> dict[str, Any]:
    schema = {"type": "object", "required": ["resourceType"],
              "properties": {"resourceType": {"type": "string", "enum": [type_]},
                             "id": _ID}}
    return {"required": True, "content": {FHIR_JSON: {"schema": schema},
                                          "application/json": {"schema": schema}}}


def _patch_body(type_: str) -> dict[str, Any]:
    operations = {"type": "array", "items": {
        "type": "object", "required": ["op", "path"],
        "properties": {"op": {"type": "string", "enum": ["add", "remove", "replace", "move",
                                                         "copy", "test"]},
                       "path": {"type": "string"}, "value": {}}}}
    return {"required": True, "content": {JSON_PATCH: {"schema": operations},
                                          **_resource_body("Parameters")["content"]}}


def _form_body(entry: dict[str, Any]) -> dict[str, Any]:
    properties = {p["name"]: {"type": "string"} for p in entry.get("searchParam", [])}
    return {"required": False,
            "content": {FORM: {"schema": {"type": "object", "properties": properties}}}}


def _any_body() -> dict[str, Any]:
    return {"required": False,
            "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}}}


def _components() -> dict[str, Any]:
    resource = {"type": "object", "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string"}}}
    outcome = {"type": "object", "required": ["resourceType", "issue"],
               "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                              "issue": {"type": "array", "items": {"type": "object"}}}}
    return {
        "schemas": {"Resource": resource, "OperationOutcome": outcome},
        "responses": {
            "Resource": {"description": "A FHIR resource (a Bundle for searches and history); "
                                        "empty for 202, 204 and Prefer: return=minimal",
                         "content": {FHIR_JSON: {"schema": {"$ref":
                                                            "#/components/schemas/Resource"}}}},
            "Error": {"description": "An OperationOutcome saying what went wrong and where",
                      "content": {FHIR_JSON: {"schema": {"$ref":
                                                         "#/components/schemas/"
                                                         "OperationOutcome"}}}}},
        "parameters": {name: {"name": name, "in": "query", "schema": {"type": "string"}}
                       for name in (*RESULT_PARAMETERS, "_since")},
    }
