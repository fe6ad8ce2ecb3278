"""``Device?parent=``: the devices below a gateway or a monitor.

R4 gives Device no search parameter on ``parent``; the registry needs one to find a
gateway's devices (and through them the patients a gateway's outage concerns). It is
a custom SearchParameter the MQTT gateway stores on start when absent, so it is a
SearchParameter like any other: listed in the CapabilityStatement, usable by clients,
kept by every serving process.
"""

from __future__ import annotations

from hygeia.fhir.search.query import parse_query
from hygeia.server.extensions import Host
from hygeia.server.rest import write
from hygeia.store import Session

PARENT_PARAMETER_ID = "hygeia-device-parent"
PARENT_PARAMETER = {
    "resourceType": "SearchParameter", "id": PARENT_PARAMETER_ID,
    "url": "urn:hygeia:SearchParameter:Device-parent", "name": "parent", "status": "active",
    "description": "The device this device is part of (Device.parent): a gateway's or a "
                   "monitor's devices.",
    "code": "parent", "base": ["Device"], "type": "reference", "expression": "Device.parent",
    "target": ["Device"],
}
MAX_CHILDREN = 1_000


def ensure_parent_parameter(host: Host) -> None:
    """Store the SearchParameter when the database has none yet (idempotent)."""
    with host.reader() as session:
        if session.current("SearchParameter", PARENT_PARAMETER_ID) is not None:
            return
    with host.transaction() as session:
        if session.current("SearchParameter", PARENT_PARAMETER_ID) is None:
            write.update(session, "SearchParameter", PARENT_PARAMETER_ID, PARENT_PARAMETER)


def children(session: Session, device_id: str) -> list[str]:
    """The ids of the Devices whose parent is ``Device/device_id`` (at most MAX_CHILDREN)."""
    if session.registry is None or session.registry.get("Device", "parent") is None:
        return []  # not registered in this process yet
    query = parse_query("Device", [("parent", f"Device/{device_id}")],
                        registry=session.registry, max_count=MAX_CHILDREN)
    query.count = MAX_CHILDREN
    return [version.id for version in session.search(query).matches]
