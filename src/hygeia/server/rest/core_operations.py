"""The core's own operations, registered exactly as a pillar registers its own.

``$everything`` and ``$validate`` answer at once; ``$export``, ``$import`` and
``$reindex`` queue a background job and answer 202 with its status URL
(``jobs/``). Each declaration below is the one place that says where the
operation is offered, with which methods, in which session and how the audit
trail records it (:class:`~hygeia.server.extensions.Operation`).
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.outcome import Issue, operation_outcome
from hygeia.fhir.validation import validate
from hygeia.server.auth.operations import check_bulk_write
from hygeia.server.bulk.importing import kick_off_import
from hygeia.server.bulk.kickoff import kick_off
from hygeia.server.context import FhirResponse
from hygeia.server.extensions import Operation, OperationCall
from hygeia.server.jobs.reindex import start_reindex
from hygeia.server.rest import search
from hygeia.server.rest.operations import OperationRegistry

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
_EXPORT_LEVELS = {None: "system", "Patient": "patient", "Group": "group"}


def everything(call: OperationCall) -> FhirResponse:
    assert call.session is not None and call.id is not None
    return search.everything(call.session, call.request, call.id, call.host.settings)


def validate_resource(call: OperationCall) -> FhirResponse:
    """``$validate``: 200 with an OperationOutcome listing every issue found (or none)."""
    return validate_operation(call.request.body, call.resource_type or "")


def validate_operation(body: Any, resource_type: str) -> FhirResponse:
    resource = body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters" \
            and resource_type != "Parameters":
        resource = next((p.get("resource") for p in body.get("parameter", [])
                         if isinstance(p, dict) and p.get("name") == "resource"), None)
    issues = validate(resource, resource_type)
    if not issues:
        issues = [Issue("informational", f"The {resource_type} is valid.",
                        severity="information")]
    return FhirResponse(200, resource=operation_outcome(issues))


def export(call: OperationCall) -> FhirResponse:
    return kick_off(call.host, call.request, _EXPORT_LEVELS[call.resource_type], call.id)


def import_(call: OperationCall) -> FhirResponse:
    check_bulk_write(call.request.access, "$import", "cu")
    return kick_off_import(call.host, call.request)


def reindex(call: OperationCall) -> FhirResponse:
    check_bulk_write(call.request.access, "$reindex", "u")
    return start_reindex(call.host, call.request, call.resource_type)


CORE_OPERATIONS = (
    Operation("everything", everything,
              "http://hl7.org/fhir/OperationDefinition/Patient-everything",
              instances=frozenset({"Patient"}), methods=("GET",), session="read",
              access="s", filter_types=True, reads_trail=True,
              documentation="The patient, its compartment and what those reference."),
    Operation("validate", validate_resource,
              "http://hl7.org/fhir/OperationDefinition/Resource-validate",
              types=None, methods=("POST",),
              documentation="Validate a resource (or a Parameters with one) against R4."),
    Operation("export", export,
              {"system": f"{BULK}/export", "Patient": f"{BULK}/patient-export",
               "Group": f"{BULK}/group-export"},
              system=True, types=frozenset({"Patient"}), instances=frozenset({"Group"}),
              methods=("GET", "POST"), starts_job=True, reads_trail=True,
              documentation="Bulk Data export (asynchronous)."),
    # no published definitions for these two: Hygeia's own names (docs/guide/bulk.md)
    Operation("import", import_, "urn:hygeia:OperationDefinition:import", system=True,
              starts_job=True, documentation="Bulk import of NDJSON files (asynchronous)."),
    Operation("reindex", reindex, "urn:hygeia:OperationDefinition:reindex", system=True,
              types=None, starts_job=True,
              documentation="Rebuild the search index of every resource or one type "
                            "(asynchronous)."),
)


def core_operation_registry() -> OperationRegistry:
    """A registry holding the core's operations, to which pillars add their own."""
    registry = OperationRegistry()
    for operation in CORE_OPERATIONS:
        registry.register(operation)
    return registry
