"""Alerting, a core service every pillar uses: Flag, Task and Communication for a
condition that needs a clinician, deduplicated while it persists, acknowledged by
updating the Task, escalated by timers kept in the database (ADR 0010).

A pillar uses the running server's service, ``host.alerts`` (an
:class:`AlertService`, bound to the ``alerts`` settings and this process's
escalation thread), inside a write transaction of its own::

    from hygeia.server.alerts import Alert

    with host.transaction() as session:
        host.alerts.raise_alert(session, Alert(
            key="device-offline|gw-7", subject="Patient/1", code={"text": "Gateway offline"},
            text="Gateway gw-7 stopped reporting.", priority="urgent", source="Device/gw-7"))
    ...
    with host.transaction() as session:
        host.alerts.clear_alert(session, "device-offline|gw-7")

:func:`raise_alert` and :func:`clear_alert` are the same steps with the settings
passed explicitly (for code that holds a session but no host).
"""

from __future__ import annotations

from hygeia.server.alerts.careteam import Recipients, recipients_for
from hygeia.server.alerts.model import (
    ESCALATION_ROLE,
    KEY_SYSTEM,
    PRIORITIES,
    TASK_CODES,
    Alert,
    AlertState,
    Raised,
)
from hygeia.server.alerts.raising import (
    active_keys,
    clear_alert,
    clear_alerts,
    raise_alert,
    raise_alerts,
    read_alerts,
)
from hygeia.server.alerts.service import AlertHost, AlertService

__all__ = [
    "ESCALATION_ROLE",
    "KEY_SYSTEM",
    "PRIORITIES",
    "TASK_CODES",
    "Alert",
    "AlertHost",
    "AlertService",
    "AlertState",
    "Raised",
    "Recipients",
    "active_keys",
    "clear_alert",
    "clear_alerts",
    "raise_alert",
    "raise_alerts",
    "read_alerts",
    "recipients_for",
]
