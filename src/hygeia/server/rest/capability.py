"""The CapabilityStatement, generated from what the server really implements.

Every claim here is backed by code and by a test: when an interaction or
search parameter is added, it is added here and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hygeia import FHIR_VERSION, __version__
from hygeia.fhir.datetime import format_instant, now_us
from hygeia.fhir.search.parameters import SearchParameter, SearchRegistry
from hygeia.fhir.search.query import MODIFIERS, PREFIXED_TYPES
from hygeia.fhir.spec import logical_types, resource_types

if TYPE_CHECKING:
    from hygeia.server.extensions import Operation
    from hygeia.server.rest.operations import OperationRegistry
from hygeia.server.rest.write import NOT_HONOURED_YET

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                     "history-type", "create", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system", "search-system")
RESULT_PARAMETERS = ("_count", "_sort", "_include", "_revinclude", "_total", "_summary",
                     "_elements", "_cursor")


def _search_param(parameter: SearchParameter) -> dict[str, str]:
    modifiers = sorted(MODIFIERS.get(parameter.type, set()))
    if parameter.type == "reference":
        modifiers.append("[type]")
    notes = f"Modifiers: {', '.join(modifiers)}." if modifiers else "No modifiers."
    if parameter.type in PREFIXED_TYPES:
        notes += " Prefixes: eq, ne, gt, lt, ge, le, sa, eb, ap."
    if parameter.type == "reference":
        notes += " Chainable and usable in _has (up to the server's chain depth, default 3)."
    return {"name": parameter.code, "definition": parameter.url, "type": parameter.type,
            "documentation": notes}


def _searchable(registry: SearchRegistry, resource_type: str) -> list[SearchParameter]:
    parameters = registry.for_type(resource_type)
    return [parameters[code] for code in sorted(parameters)
            if parameters[code].indexed or code in ("_id", "_lastUpdated")]


def _interactions(resource_type: str) -> tuple[str, ...]:
    """A type the server cannot honour yet (write.NOT_HONOURED_YET) can be read and
    deleted, not written."""
    if resource_type in NOT_HONOURED_YET:
        return tuple(c for c in TYPE_INTERACTIONS if c not in ("create", "update", "patch"))
    return TYPE_INTERACTIONS


# rest.resource.interaction documentation (delete: the _cascade convention, off R4)
CASCADE_DOCUMENTATION = (
    "Referential integrity is enforced: deleting a resource that others reference answers "
    "409 unless the request adds ?_cascade=delete (a HAPI FHIR convention, not part of "
    "R4), which deletes the referring resources too, recursively, up to 1,000 of them.")
ENFORCED_POLICY = ["literal", "enforced", "local"]


def _interaction(code: str, integrity: bool) -> dict[str, str]:
    if integrity and code == "delete":
        return {"code": code, "documentation": CASCADE_DOCUMENTATION}
    return {"code": code}


def _resource_entry(resource_type: str, registry: SearchRegistry,
                    referrers: dict[str, list[str]], operations: OperationRegistry,
                    integrity: bool) -> dict[str, Any]:
    searchable = _searchable(registry, resource_type)
    includes = [f"{resource_type}:{p.code}" for p in searchable if p.type == "reference"]
    policy = {"referencePolicy": ENFORCED_POLICY} if integrity else {}
    return {
        "type": resource_type,
        **_logical_profile(resource_type),
        "interaction": [_interaction(code, integrity)
                        for code in _interactions(resource_type)],
        **policy,
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",  # If-None-Match and If-Modified-Since
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchInclude": ["*", *includes],
        "searchRevInclude": ["*", *referrers.get(resource_type, [])],
        "searchParam": [_search_param(p) for p in searchable],
        "operation": [_operation(operation, resource_type)
                      for operation in operations.on_type(resource_type)],
    }


def _logical_profile(resource_type: str) -> dict[str, str]:
    """A type outside R4 names its StructureDefinition (and says what it is)."""
    declared = logical_types().get(resource_type)
    if declared is None:
        return {}
    entry = {"profile": declared.url}
    if declared.documentation:
        entry["documentation"] = declared.documentation
    return entry


def _operation(operation: Operation, target: str) -> dict[str, str]:
    entry = {"name": operation.name, "definition": operation.definition_at(target)}
    if operation.documentation:
        entry["documentation"] = operation.documentation
    return entry


def _referrers(registry: SearchRegistry) -> dict[str, list[str]]:
    """Target type -> the ``Source:param`` references that can point at it (for _revinclude)."""
    found: dict[str, list[str]] = {}
    for source in sorted(resource_types()):
        for parameter in _searchable(registry, source):
            if parameter.type == "reference":
                for target in parameter.target:
                    found.setdefault(target, []).append(f"{source}:{parameter.code}")
    return found


def capability_statement(dialect: str, registry: SearchRegistry,
                         operations: OperationRegistry,
                         referential_integrity: bool = False) -> dict[str, Any]:
    """Build the CapabilityStatement for a server running on ``dialect`` with the search
    parameters of ``registry`` and the registered ``operations`` (enforcing referential
    integrity or not: ``referencePolicy`` and the delete documentation)."""
    referrers = _referrers(registry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now_us())[:10],
        "publisher": "Hygeia",
        "kind": "instance",
        "software": {"name": "Hygeia", "version": __version__},
        "implementation": {"description": f"Hygeia FHIR server on {dialect}"},
        "fhirVersion": FHIR_VERSION,
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Search: every R4 SearchParameter of type string, token, "
                             "reference, date, number, quantity, uri and composite, plus "
                             "custom SearchParameters. Result parameters: "
                             f"{', '.join(RESULT_PARAMETERS)}. Unknown parameters are ignored "
                             "and reported in an OperationOutcome entry (Prefer: "
                             "handling=strict refuses them).",
            "resource": [_resource_entry(name, registry, referrers, operations,
                                         referential_integrity)
                         for name in sorted(resource_types())],
            "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            "searchParam": [_search_param(p) for p in _searchable(registry, "Resource")],
            "operation": [_operation(operation, "system")
                          for operation in operations.at_system()],
        }],
    }


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def with_security(statement: dict[str, Any], smart: dict[str, Any], fhir_base: str
                  ) -> dict[str, Any]:
    """The statement with SMART's security section: how to get a token from this server.

    SMART clients that predate ``.well-known/smart-configuration`` (the Python
    ``fhirclient`` among them) find the authorize and token endpoints here.
    """
    endpoints = {"authorize": "authorization_endpoint", "token": "token_endpoint",
                 "introspect": "introspection_endpoint", "revoke": "revocation_endpoint"}
    security = {
        "cors": True,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR"}]}],
        "extension": [{"url": OAUTH_URIS, "extension": [
            {"url": name, "valueUri": smart[key]}
            for name, key in endpoints.items() if key in smart]}],
        "description": "SMART App Launch 2.0 and Backend Services; see "
                       f"{fhir_base}.well-known/smart-configuration.",
    }
    rest = [{**statement["rest"][0], "security": security}, *statement["rest"][1:]]
    return {**statement, "rest": rest}
