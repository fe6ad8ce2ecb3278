"""The MQTT client id: stable per database, so the broker keeps one session for it.

A persistent session is found by client id alone: the id must survive restarts
(or the messages queued meanwhile would wait for a client that never returns)
and must differ between two Hygeia databases on one broker (or each would take
the other's session, and its messages). So it is made once, at random, and kept
in the database it belongs to, as a ``Basic`` resource with a fixed id; every
server on that database uses it. ``--mqtt-client-id`` overrides it.
"""

from __future__ import annotations

import uuid

from hygeia.devices.registry.devices import content_of
from hygeia.server.extensions import Host
from hygeia.server.rest import write

RECORD_ID = "hygeia-mqtt-client"
SYSTEM = "urn:hygeia:mqtt:client"


def database_client_id(host: Host) -> str:
    """The client id kept in the database (made on first use)."""
    with host.transaction() as session:
        session.lock(f"Basic/{RECORD_ID}")
        current = session.current("Basic", RECORD_ID)
        if current is not None and not current.deleted:
            for identifier in content_of(current).get("identifier") or []:
                if identifier.get("system") == SYSTEM and identifier.get("value"):
                    return str(identifier["value"])
        client_id = f"hygeia-{uuid.uuid4().hex[:16]}"
        write.update(session, "Basic", RECORD_ID, {
            "resourceType": "Basic", "id": RECORD_ID,
            "code": {"text": "Hygeia's MQTT client id (its persistent broker session)"},
            "identifier": [{"system": SYSTEM, "value": client_id}]})
        return client_id
