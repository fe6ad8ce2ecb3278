"""Writing what a message became: update-as-create under deterministic ids, once.

Every resource goes through :func:`upsert_all`, which writes it with the FHIR
update interaction (validated like a client's PUT) unless the stored current
version already says the same thing. A replayed message therefore stores
nothing twice: no new resource and no new version.

Concurrency: the caller names a lock (the monitor, the lab order) that every
message writing the same resources takes first, so two messages about the same
new device serialise instead of colliding, and what was read stays true until
commit.

Cost: one ``_id`` search per resource type of the message reads what is stored
(a monitor message names some twenty devices, nearly always unchanged); one
batched look-up of the new ones' heads (a deleted resource is revived by an
update, not created again); then one write per resource that is new or changed.
"""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.devices.hl7v2.handling import Handled, Rejected
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.search.query import parse_criteria
from hygeia.server.rest import write
from hygeia.store import Session

IDS_PER_SEARCH = 90  # below the search's limit of 100 OR-ed values


def upsert(session: Session, resource: dict[str, Any], handled: Handled, *,
           location: str = "") -> str:
    """Store one resource (it has its id) unless unchanged; returns ``Type/id``."""
    reference = f"{resource['resourceType']}/{resource['id']}"
    upsert_all(session, [(resource, location)], handled, lock=reference)
    return reference


def upsert_all(session: Session, resources: list[tuple[dict[str, Any], str]],
               handled: Handled, *, lock: str) -> None:
    """Store each resource unless unchanged, in the order given (parents first).

    ``lock`` is taken first (see the module docstring). Each resource comes with
    the ERR location of the segment it was made from: a resource the server
    refuses (invalid FHIR) rejects the whole message there.
    """
    session.lock(f"hl7v2:{lock}")
    stored = _stored_contents(session, [resource for resource, _ in resources])
    new = [(r["resourceType"], r["id"]) for r, _ in resources
           if (r["resourceType"], r["id"]) not in stored]
    deleted = set(session.heads(new)) if new else set()
    for resource, location in resources:
        key = (resource["resourceType"], resource["id"])
        if key in stored and _same(stored[key], resource):
            continue
        _write(session, resource, location, create=key not in stored and key not in deleted)
        stored[key] = resource  # a message naming it twice updates it the second time
        if f"{key[0]}/{key[1]}" not in handled.written:
            handled.written.append(f"{key[0]}/{key[1]}")


def _write(session: Session, resource: dict[str, Any], location: str, *, create: bool) -> None:
    """Create (a resource never stored: no read needed) or update it."""
    resource_type, id = resource["resourceType"], resource["id"]
    body = dict(resource)  # the write sets id and meta at the top level only
    try:
        if create:
            write.create(session, resource_type, body, id=id)
        else:
            write.update(session, resource_type, id, body)
    except FhirError as error:
        reason = "; ".join(issue.diagnostics for issue in error.issues[:3])
        raise Rejected(f"{resource['resourceType']}/{resource['id']} made from this message "
                       f"is not valid FHIR: {reason}", location=location,
                       hl7_code="207") from error


def _stored_contents(session: Session, resources: list[dict[str, Any]]
                     ) -> dict[tuple[str, str], dict[str, Any]]:
    """The current content of those of ``resources`` that exist (and are not deleted)."""
    ids: dict[str, list[str]] = {}
    for resource in resources:
        ids.setdefault(resource["resourceType"], []).append(resource["id"])
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for resource_type, wanted in ids.items():
        unique = sorted(set(wanted))
        for start in range(0, len(unique), IDS_PER_SEARCH):
            chunk = unique[start:start + IDS_PER_SEARCH]
            query = parse_criteria(resource_type, "_id=" + ",".join(chunk), session.registry)
            query.count = len(chunk)
            for match in session.search(query).matches:
                if match.content is not None:
                    found[(resource_type, match.id)] = orjson.loads(match.content)
    return found


def _same(stored: dict[str, Any], resource: dict[str, Any]) -> bool:
    return {k: v for k, v in stored.items() if k != "meta"} == \
        {k: v for k, v in resource.items() if k != "meta"}
