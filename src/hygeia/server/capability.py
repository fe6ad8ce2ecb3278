"""The CapabilityStatement, generated from what the server really implements.

Every claim here is backed by code and by a test: when an interaction or
search parameter is added, it is added here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from hygeia import FHIR_VERSION, __version__
from hygeia.fhir.datetime import format_instant, now_us
from hygeia.fhir.spec import resource_types, search_parameters

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                     "history-type", "create", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
_ID_PARAM = {"name": "_id", "type": "token",
             "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
             "documentation": "Logical id; commas OR several ids."}


def _identifier_param(resource_type: str) -> dict[str, str]:
    return {"name": "identifier", "type": "token",
            "definition": f"http://hl7.org/fhir/SearchParameter/{resource_type}-identifier",
            "documentation": "system|value, |value, system| or value; commas OR values."}


def _identifier_types() -> frozenset[str]:
    """Types whose official ``identifier`` SearchParameter the token index serves."""
    return frozenset(base for param in search_parameters() if param["code"] == "identifier"
                     for base in param["base"])


def _resource_entry(resource_type: str, identifier_types: frozenset[str]) -> dict[str, Any]:
    params = [_ID_PARAM]
    if resource_type in identifier_types:
        params.append(_identifier_param(resource_type))
    return {
        "type": resource_type,
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchParam": params,
        "operation": [{"name": "validate",
                       "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
    }


def capability_statement(dialect: str) -> dict[str, Any]:
    """Build the CapabilityStatement for a server running on ``dialect``."""
    identifier_types = _identifier_types()
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now_us())[:10],
        "publisher": "Hygeia",
        "kind": "instance",
        "software": {"name": "Hygeia", "version": __version__},
        "implementation": {"description": f"Hygeia FHIR server on {dialect}"},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Searching supports _id and identifier for now; other parameters "
                             "are ignored and reported in an OperationOutcome entry "
                             "(or refused with Prefer: handling=strict).",
            "resource": [_resource_entry(name, identifier_types)
                         for name in sorted(resource_types())],
            "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
        }],
    }
