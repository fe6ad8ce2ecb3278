"""Escalation: an acknowledgement Task left unacknowledged past its due time moves up.

The timer is the Task itself: ``restriction.period.end`` is when it falls due,
and the extension ``alert-escalation-level`` counts the escalations so far. So
timers live in the database and survive any restart; nothing is held in memory
but a hint of when to look next (ADR 0010).

One step (:func:`escalate`) runs in its own transaction: it locks the Task,
reads it again and acts only when it is still unacknowledged, still due and
below the last level. Two processes that find the same overdue Task therefore
escalate it once: the second finds it no longer due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.fhir.datetime import fhir_datetime_range, format_instant, now_us
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.resources import new_id
from hygeia.fhir.search.query import parse_query
from hygeia.server.alerts.careteam import recipients_for
from hygeia.server.alerts.model import (
    ACKNOWLEDGE,
    ESCALATE_AFTER,
    ESCALATION_LEVEL,
    KEY_SYSTEM,
    MAX_ESCALATIONS,
    TASK_CODES,
    UNACKNOWLEDGED,
    raised_priority,
)
from hygeia.server.alerts.raising import communication
from hygeia.server.context import AlertSettings
from hygeia.server.rest import write
from hygeia.store import Session

log = logging.getLogger("hygeia.alerts")
SCAN_PAGE = 500  # open acknowledgement Tasks read per page of a scan


@dataclass(frozen=True, slots=True)
class Scan:
    """The open acknowledgement Tasks already due (``due``, ids), and the earliest due
    time still ahead (``next_due``, microseconds; None when none is pending)."""

    due: list[str]
    next_due: int | None


def scan(session: Session, settings: AlertSettings, now: int) -> Scan:
    """Find the unacknowledged alert Tasks due at ``now`` (below the last level)."""
    due: list[str] = []
    upcoming: list[int] = []
    cursor: str | None = None
    while True:
        params = [("code", f"{TASK_CODES}|{ACKNOWLEDGE}"), ("status", ",".join(UNACKNOWLEDGED)),
                  ("_count", str(SCAN_PAGE))] + ([("_cursor", cursor)] if cursor else [])
        page = session.search(parse_query("Task", params, registry=session.registry))
        for stored in page.matches:
            task = orjson.loads(stored.content or b"{}")
            when = due_at(task)
            if when is None or level_of(task) >= _most(task, settings):
                continue
            if when <= now:
                due.append(stored.id)
            else:
                upcoming.append(when)
        cursor = page.next_cursor
        if not cursor:
            return Scan(due, min(upcoming) if upcoming else None)


def escalate(session: Session, task_id: str, settings: AlertSettings, now: int) -> bool:
    """Escalate one Task if it is still unacknowledged and due (True when it was).

    The Task moves one priority step up (routine, urgent, asap, stat), its level
    rises by one and it falls due again one escalation period later; a new
    Communication tells the escalation recipients (care-team participants with
    the escalation role, else the configured escalation or fallback recipient).
    """
    session.lock(f"alert-task:{task_id}")
    stored = session.current("Task", task_id, for_update=True)
    if stored is None or stored.deleted:
        return False
    task = orjson.loads(stored.content or b"{}")
    when = due_at(task)
    level = level_of(task)
    if task.get("status") not in UNACKNOWLEDGED or when is None or when > now or \
            level >= _most(task, settings):
        return False
    level += 1
    after = _after(task, settings)
    subject = (task.get("for") or {}).get("reference") or ""
    recipients = recipients_for(session, subject, settings)
    task["priority"] = raised_priority(task.get("priority"))
    task["lastModified"] = format_instant(now)
    task["restriction"] = {"period": {"end": format_instant(now + int(after * 1_000_000))}}
    task["businessStatus"] = {"text": f"Escalated (level {level}): not acknowledged in time."}
    _set_level(task, level)
    write.update(session, "Task", task_id, task)
    key = next((identifier.get("value") for identifier in task.get("identifier") or []
                if identifier.get("system") == KEY_SYSTEM), task_id)
    focus = (task.get("focus") or {}).get("reference")
    about = [reference for reference in (focus, f"Task/{task_id}") if reference]
    text = f"Escalation {level}: not acknowledged. {task.get('description', '')}".strip()
    write.create(session, "Communication", communication(
        subject, task["priority"], text, recipients.escalation, about=about,
        sender=(task.get("requester") or {}).get("reference"), note=None,
        identifier=f"{key}#{level}", now=now), id=new_id())
    return True


def due_at(task: dict[str, Any]) -> int | None:
    """When the Task falls due (microseconds), from ``restriction.period.end``."""
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    return fhir_datetime_range(end)[0] if isinstance(end, str) else None


def level_of(task: dict[str, Any]) -> int:
    """Escalations so far (the ``alert-escalation-level`` extension)."""
    return _integer(task, ESCALATION_LEVEL, 0)


def _most(task: dict[str, Any], settings: AlertSettings) -> int:
    """Escalations allowed: the alert's own ``max_escalations``, else the settings'."""
    return _integer(task, MAX_ESCALATIONS, settings.max_escalations)


def _integer(task: dict[str, Any], url: str, default: int) -> int:
    for extension in task.get("extension") or []:
        if extension.get("url") == url and isinstance(extension.get("valueInteger"), int):
            return int(extension["valueInteger"])
    return default


def _set_level(task: dict[str, Any], level: int) -> None:
    others = [e for e in task.get("extension") or [] if e.get("url") != ESCALATION_LEVEL]
    task["extension"] = [*others, {"url": ESCALATION_LEVEL, "valueInteger": level}]


def _after(task: dict[str, Any], settings: AlertSettings) -> float:
    for extension in task.get("extension") or []:
        if extension.get("url") == ESCALATE_AFTER:
            return float(extension.get("valueDecimal", settings.escalate_after_seconds))
    return settings.escalate_after_seconds


def run_due(transaction: Callable[[], AbstractContextManager[Session]],
            settings: AlertSettings, due: list[str]) -> int:
    """Escalate each of ``due`` in a transaction of its own; returns how many moved.

    A Task that cannot be escalated (a client stored something the step cannot
    write back) is logged and skipped, so it never holds up the others.
    """
    moved = 0
    for task_id in due:
        try:
            with transaction() as session:
                moved += escalate(session, task_id, settings, now_us())
        except FhirError:
            log.exception("alert Task/%s could not be escalated", task_id)
    return moved
