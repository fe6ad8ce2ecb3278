"""Scopes for the operations that run as background jobs ($export, $import, $reindex).

A job reads or writes whole types outside any one request's session, so the
guard cannot screen it row by row: the kick-off decides instead.  Bulk work
needs whole-type scopes (system or user level, no patient binding, no
``?param=`` constraint), and a job's status and files belong to the client
that started it.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.outcome import Forbidden, NotFound
from hygeia.server.auth.access import Access


def export_types(access: Access | None, types: list[str], explicit: bool) -> list[str]:
    """The types an export may include: those asked for, all of which must be readable
    whole; or, when none were named, every type the token may read whole."""
    if access is None:
        return types
    _refuse_patient_bound(access, "$export")
    readable = [t for t in types if _whole(access, t, "r")]
    if explicit and len(readable) < len(types):
        denied = sorted(set(types) - set(readable))
        raise Forbidden(f"This access token may not export {', '.join(denied)}: bulk export "
                        "needs a system/ or user/ read scope for the whole type.",
                        code="forbidden", expression="_type")
    if not readable:
        raise Forbidden("This access token may not read any type in full, so it cannot "
                        "export.", code="forbidden")
    return readable


def check_bulk_write(access: Access | None, operation: str, actions: str) -> None:
    """$import and $reindex touch any type: they need ``*`` with ``actions``, unrestricted."""
    if access is None:
        return
    _refuse_patient_bound(access, operation)
    for rule in access.scopes.rules:
        if rule.resource_type == "*" and not rule.constraints and \
                all(a in rule.actions for a in actions) and rule.context in ("system", "user"):
            return
    raise Forbidden(f"{operation} needs a system/*.{actions} (or user/*.{actions}) scope.",
                    code="forbidden", expression=operation)


def client_of(access: Access | None) -> str | None:
    """What a job records as its owner."""
    return None if access is None else access.client_id


def check_job_owner(access: Access | None, request: dict[str, Any], job_id: str) -> None:
    """Only the client that started a job may see it (others are told it does not exist)."""
    if access is not None and request.get("client") != access.client_id:
        raise NotFound(f"There is no job {job_id} for this client.", expression="id")


def _whole(access: Access, resource_type: str, action: str) -> bool:
    return any(r.unrestricted for r in access.restrictions(resource_type, action))


def _refuse_patient_bound(access: Access, operation: str) -> None:
    if access.bound_patient is not None:
        raise Forbidden(f"{operation} is for system and user-level clients, not a token bound "
                        "to one patient.", code="forbidden", expression=operation)
