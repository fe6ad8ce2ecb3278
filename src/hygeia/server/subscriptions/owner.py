"""Whose eyes a Subscription's notifications are for: the token that created it.

With authorization on, the acceptance hook records the creating request's
access (client, subject, scopes, patient context).  Before an event is
recorded for a subscription, the feed consumer asks the same guard a read
would: may that access read this resource?  If not, no event is recorded at
all, so neither a full resource, nor an id, nor even a count of events leaks
what the creator could not read.  The scopes are those granted at creation; a
Subscription created without a token (auth off, ``hygeia load``) is unrestricted.
"""

from __future__ import annotations

from typing import Any

import orjson

from hygeia.fhir.outcome import FhirError
from hygeia.server.auth.access import Access
from hygeia.server.auth.guard import guarded
from hygeia.server.auth.scopes import Scopes
from hygeia.store import Session


def access_text(access: Access) -> str:
    """The claims kept for a subscription, as JSON."""
    return orjson.dumps({"client_id": access.client_id, "scopes": access.scopes.text,
                         "subject": access.subject, "fhir_user": access.fhir_user,
                         "patient": access.patient}).decode()


def access_of(text: str) -> Access:
    data: dict[str, Any] = orjson.loads(text)
    return Access(str(data["client_id"]), Scopes.parse(str(data["scopes"])),
                  str(data["subject"]), fhir_user=data.get("fhir_user"),
                  patient=data.get("patient"))


def may_read(session: Session, access: Access, resource_type: str, id: str) -> bool:
    """Whether ``access`` may read the current ``resource_type/id`` (a deletion: only
    with unrestricted access to the type, as the guard decides for reads)."""
    try:
        return guarded(session, access, "read").current(resource_type, id) is not None
    except FhirError:  # no read access to the type at all
        return False
