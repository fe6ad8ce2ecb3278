"""Writing what a message became: update-as-create under deterministic ids, once.

Every resource goes through :func:`upsert`, which writes it with the FHIR update
interaction (validated like a client's PUT) unless the stored current version
already says the same thing. A replayed message therefore stores nothing twice:
no new resource and no new version.

Cost: one primary-key read per resource (two, plus a lock, the first time a
resource is created), whether or not it changed.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from hygeia.devices.hl7v2.handling import Handled, Rejected
from hygeia.fhir.outcome import FhirError
from hygeia.server.rest import write
from hygeia.store import Session


def upsert(session: Session, resource: dict[str, Any], handled: Handled, *,
           location: str = "") -> str:
    """Store ``resource`` (it has its id) unless unchanged; returns ``Type/id``.

    A resource the server refuses (invalid FHIR) rejects the whole message, with
    ``location`` as the ERR location of the segment it came from.
    """
    resource_type, id = resource["resourceType"], resource["id"]
    reference = f"{resource_type}/{id}"
    current = session.current(resource_type, id, for_update=True)
    if current is None:
        # Two messages about a new device may race to create it: the second waits here,
        # then finds the first one's resource instead of colliding with it.
        session.lock(reference)
        current = session.current(resource_type, id, for_update=True)
    if current is not None and not current.deleted and current.content is not None \
            and _same(orjson.loads(current.content), resource):
        return reference
    try:
        write.update(session, resource_type, id, copy.deepcopy(resource))
    except FhirError as error:
        reason = "; ".join(issue.diagnostics for issue in error.issues[:3])
        raise Rejected(f"{reference} made from this message is not valid FHIR: {reason}",
                       location=location, hl7_code="207") from error
    handled.written.append(reference)
    return reference


def _same(stored: dict[str, Any], resource: dict[str, Any]) -> bool:
    return {k: v for k, v in stored.items() if k != "meta"} == \
        {k: v for k, v in resource.items() if k != "meta"}
