"""Gateway status: the retained ``online``/``offline`` on ``hygeia/{gateway}/status``.

A gateway publishes ``online`` (retained) when it connects and leaves
``offline`` as its last will, so the broker announces a gateway that vanished.
The status is kept as the gateway Device's ``status``: ``active`` while online,
``inactive`` while offline. A retained status arrives again on every
(re)subscription; only a change writes a new version.
"""

from __future__ import annotations

import logging

from hygeia.devices.mqtt.storing import ensure_gateway
from hygeia.devices.registry import set_device_status
from hygeia.fhir.outcome import BadRequest
from hygeia.store import Session

log = logging.getLogger("hygeia.devices.mqtt")

STATUSES = {"online": "active", "offline": "inactive"}


def parse_status(payload: bytes) -> str | None:
    """``online`` or ``offline``; None for an empty payload (a retained status cleared);
    BadRequest for anything else."""
    text = payload.decode("utf-8", "replace").strip().lower()
    if not text:
        return None
    if text not in STATUSES:
        raise BadRequest(f"A gateway status is 'online' or 'offline', not {text[:40]!r}.",
                         expression="payload")
    return text


def record_status(session: Session, gateway: str, status: str) -> bool:
    """Keep ``status`` on the gateway's Device; True when it changed. A change to
    ``offline`` raises the device-offline alert (:func:`raise_device_offline_alert`)."""
    gateway_id = ensure_gateway(session, gateway)
    changed = set_device_status(session, gateway_id, STATUSES[status])
    if changed:
        log.info("MQTT gateway %s is %s (Device/%s)", gateway, status, gateway_id)
        if status == "offline":
            raise_device_offline_alert(session, gateway, gateway_id)
    return changed


def raise_device_offline_alert(session: Session, gateway: str, gateway_id: str) -> None:
    """Where a gateway that went offline raises the device-offline alert.

    Called in the transaction that records the change, so the alert and the status
    commit together. Today it records nothing more than the status change (the gateway
    Device is ``inactive``, see :func:`record_status`) and a warning in the log: the
    alert itself (a Flag and a Communication to the care team, deduplicated while the
    gateway stays offline) is created here once the core alerting service
    (hygeia.server.alerts, issue 16) exists.
    """
    log.warning("MQTT gateway %s went offline (Device/%s): device-offline alert not sent "
                "yet, the alerting service is not wired", gateway, gateway_id)
